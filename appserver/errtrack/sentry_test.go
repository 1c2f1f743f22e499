package errtrack_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getsentry/sentry-go"
	"go.uber.org/zap"

	"github.com/muejam/edge/appserver/errtrack"
	"github.com/muejam/edge/appserver/identity"
	"github.com/muejam/edge/appserver/reqid"
	"github.com/muejam/edge/internal/pii"
)

// sentryEvent is what the test reads of an event the SDK sent.
type sentryEvent struct {
	Message     string            `json:"message"`
	Fingerprint []string          `json:"fingerprint"`
	Tags        map[string]string `json:"tags"`
	User        map[string]any    `json:"user"`
	Request     any               `json:"request"`
	Exception   []struct {
		Type       string `json:"type"`
		Value      string `json:"value"`
		Stacktrace struct {
			Frames []struct {
				Function string `json:"function"`
			} `json:"frames"`
		} `json:"stacktrace"`
	} `json:"exception"`
}

// envelopes is a local endpoint that receives the SDK's envelopes and keeps their events.
type envelopes struct {
	mu     sync.Mutex
	events []sentryEvent
	raw    []string
}

func (e *envelopes) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.raw = append(e.raw, string(body))
	// An envelope: a header line, then an item header line and its payload, per item.
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	sc.Scan()
	for sc.Scan() {
		var item struct {
			Type string `json:"type"`
		}
		_ = json.Unmarshal(sc.Bytes(), &item)
		if !sc.Scan() {
			break
		}
		if item.Type == "event" {
			var ev sentryEvent
			if err := json.Unmarshal(sc.Bytes(), &ev); err == nil {
				e.events = append(e.events, ev)
			}
		}
	}
	w.WriteHeader(http.StatusOK)
}

func TestSentryForwardsScrubbedEvents(t *testing.T) {
	recv := &envelopes{}
	srv := httptest.NewServer(recv)
	defer srv.Close()
	scrubber, err := pii.New(pii.Config{})
	if err != nil {
		t.Fatal(err)
	}
	dsn := strings.Replace(srv.URL, "http://", "http://publickey@", 1) + "/42"
	flush, err := errtrack.EnableSentry(dsn, "test", scrubber, sentry.NewHTTPSyncTransport())
	if err != nil {
		t.Fatal(err)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("POST /boom", func(http.ResponseWriter, *http.Request) { panic("no profile for alice@example.com") })
	mux.HandleFunc("GET /fail", func(w http.ResponseWriter, r *http.Request) {
		errtrack.Internal(r, errors.New("db said: card 4111 1111 1111 1111 refused"))
		w.WriteHeader(500)
	})
	h := reqid.Middleware(identity.DefaultTrusted, nil)(errtrack.Recover(zap.NewNop())(
		identity.Middleware(identity.DefaultTrusted)(reqid.Observe(mux))))
	for _, path := range []string{"POST /boom", "GET /fail"} {
		method, p, _ := strings.Cut(path, " ")
		r := httptest.NewRequest(method, p+"?email=bob@example.com", nil)
		r.RemoteAddr = "127.0.0.1:4000"
		r.Header.Set(reqid.Header, "req-"+method)
		r.Header.Set(identity.Header, "u17")
		r.Header.Set("Cookie", "session=secret")
		h.ServeHTTP(httptest.NewRecorder(), r)
	}
	flush(5 * time.Second)

	recv.mu.Lock()
	defer recv.mu.Unlock()
	if len(recv.events) != 2 {
		t.Fatalf("%d events received: %q", len(recv.events), recv.raw)
	}
	for _, raw := range recv.raw {
		for _, leak := range []string{"alice@example.com", "bob@example.com", "4111", "session=secret"} {
			if strings.Contains(raw, leak) {
				t.Errorf("an envelope carries %q: %s", leak, raw)
			}
		}
	}
	panicEv, internal := recv.events[0], recv.events[1]
	if panicEv.Message != "no profile for [REDACTED:email]" || panicEv.Tags["kind"] != "panic" ||
		panicEv.Tags["request_id"] != "req-POST" || panicEv.Tags["route"] != "POST /boom" ||
		len(panicEv.Fingerprint) != 1 || len(panicEv.Fingerprint[0]) != 16 || panicEv.User["id"] != "u17" || panicEv.Request != nil {
		t.Errorf("panic event %+v", panicEv)
	}
	if len(panicEv.Exception) != 1 || len(panicEv.Exception[0].Stacktrace.Frames) == 0 {
		t.Errorf("panic event without a stack: %+v", panicEv.Exception)
	}
	if internal.Tags["kind"] != "internal" || internal.Tags["request_id"] != "req-GET" || strings.Contains(internal.Message, "4111") {
		t.Errorf("internal event %+v", internal)
	}
}
