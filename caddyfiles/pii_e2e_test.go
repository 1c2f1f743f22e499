package caddyfiles_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/muejam/edge/appserver/logscrub"
	"github.com/muejam/edge/internal/pii"
	"github.com/muejam/edge/internal/testenv"
	"github.com/muejam/edge/internal/testjwt"
)

// TestPIIEndToEnd is the "done when" of PII scrubbing: a request through bin/caddy, with
// dev.Caddyfile's site (moved to free ports, its access log to a file), carrying an email in
// the query, a card number in a header and a bearer token, reaches an upstream handler that
// logs the user's email, the card and the Authorization header through a zap logger wrapped
// by logscrub (as the app server's is). Neither real log file may hold any of the values.
func TestPIIEndToEnd(t *testing.T) {
	dir := t.TempDir()
	accessLog, appLog, defaultLog := filepath.Join(dir, "access.log"), filepath.Join(dir, "app.log"), filepath.Join(dir, "default.log")

	const (
		email = "alice.liddell@example.com"
		card  = "4111 1111 1111 1111"
	)
	token, jwks := devToken("alice")
	if err := os.WriteFile(filepath.Join(dir, "jwks.json"), jwks, 0o600); err != nil {
		t.Fatal(err)
	}

	// The upstream: a handler logging what a careless app handler would.
	f, err := os.Create(appLog)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	scrubber, err := pii.New(pii.Config{})
	if err != nil {
		t.Fatal(err)
	}
	log := zap.New(logscrub.Wrap(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()),
		zapcore.Lock(f), zapcore.InfoLevel), scrubber))
	reached := make(chan string, 1)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		log.Info("profile lookup for "+r.URL.Query().Get("email"),
			zap.String("user", r.Header.Get("X-Auth-User")),
			zap.String("email", r.URL.Query().Get("email")),
			zap.String("card", r.Header.Get("X-Card-Number")),
			zap.String("authorization", r.Header.Get("Authorization")),
			zap.String("uri", r.RequestURI))
		reached <- r.Header.Get("X-Auth-User")
		io.WriteString(w, "ok")
	}))
	defer upstream.Close()

	// dev.Caddyfile, moved to free ports, its access log and Caddy's own log to files, its
	// JWKS to ours.
	site, admin := testenv.FreeAddr(t), testenv.FreeAddr(t)
	_, sitePort, _ := strings.Cut(site, ":")
	conf := caddyfileFrom(t, "dev.Caddyfile", map[string]string{
		"admin localhost:2019":                      "admin " + admin,
		"http://:8080 {":                            "http://:" + sitePort + " {",
		"output buffered {\n\t\t\toutput stderr":    "output buffered {\n\t\t\toutput file " + accessLog,
		"\t\toutput stderr\n\t\tformat pii_scrub {": "\t\toutput file " + defaultLog + "\n\t\tformat pii_scrub {",
		"jwks_file .run/dev-jwt/jwks.json":          "jwks_file " + filepath.Join(dir, "jwks.json"),
		"reverse_proxy 127.0.0.1:8081 {":            "reverse_proxy " + strings.TrimPrefix(upstream.URL, "http://") + " {",
	})
	if !strings.Contains(conf, "format pii_scrub {") {
		t.Fatal("dev.Caddyfile does not log through pii_scrub")
	}
	edge := testenv.StartCaddy(t, []string{"VALKEY_ADDR=" + testenv.NewValkey(t)}, conf, "caddyfile")
	testenv.WaitHTTP(t, "http://"+admin+"/config/")

	req, err := http.NewRequest(http.MethodGet,
		"http://"+site+"/v1/profiles/lookup?email="+url.QueryEscape(email)+"&limit=20", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("X-Card-Number", card)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "ok" {
		t.Fatalf("through the edge: %d %q, want 200 ok", resp.StatusCode, body)
	}
	select {
	case user := <-reached:
		if user != "alice" {
			t.Errorf("upstream saw X-Auth-User %q, want alice (the token was not verified)", user)
		}
	default:
		t.Fatal("the request did not reach the upstream handler")
	}
	// Caddy's default logger writes what the admin API is asked, with the URI, and the
	// proxy's failures, with the error.
	adminResp, err := http.Get("http://" + admin + "/config/?email=" + url.QueryEscape(email))
	if err != nil {
		t.Fatal(err)
	}
	adminResp.Body.Close()
	upstream.Close()
	if resp, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode < 500 {
		t.Fatalf("with the upstream gone: %d, want a 5xx", resp.StatusCode)
	}
	edge.Stop(t) // flushes and closes the logs

	secrets := []string{email, url.QueryEscape(email), "alice.liddell", card, strings.ReplaceAll(card, " ", ""), token}
	for _, part := range strings.Split(token, ".") {
		secrets = append(secrets, part)
	}
	for _, file := range []struct{ path, mustHave string }{
		{accessLog, `"uri":"/v1/profiles/lookup?email=`},
		{appLog, `"msg":"profile lookup for [REDACTED:email]"`},
		{defaultLog, `"uri":"/config/?email=`},
	} {
		data, err := os.ReadFile(file.path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(data, []byte(file.mustHave)) {
			t.Errorf("%s lacks %s:\n%s", filepath.Base(file.path), file.mustHave, data)
		}
		for _, s := range secrets {
			if bytes.Contains(data, []byte(s)) {
				t.Errorf("%s contains %q:\n%s", filepath.Base(file.path), s, data)
			}
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			if !json.Valid(sc.Bytes()) {
				t.Errorf("%s: not a JSON line: %s", filepath.Base(file.path), sc.Bytes())
			}
		}
	}
}

// caddyfileFrom returns the named Caddyfile with each key replaced by its value, failing
// when a key is not in it exactly once (so that the test follows the file it copies).
func caddyfileFrom(t *testing.T, name string, replace map[string]string) string {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	conf := string(data)
	for from, to := range replace {
		if n := strings.Count(conf, from); n != 1 {
			t.Fatalf("%s holds %q %d times, want once", name, from, n)
		}
		conf = strings.Replace(conf, from, to, 1)
	}
	return conf
}

// devToken returns an EdDSA JWT for user with the dev issuer and audience, valid for a
// minute, and the JWKS that verifies it.
func devToken(user string) (string, []byte) {
	s := newSigner("muejam-dev")
	return s.token(user, time.Minute), s.JWKS()
}

// signer mints EdDSA JWTs of one issuer for the audience muejam-edge, as an identity
// provider would, with one key whose JWKS the edge is given.
type signer struct {
	*testjwt.EdDSAKey
	issuer string
}

func newSigner(issuer string) *signer {
	return &signer{EdDSAKey: testjwt.NewEdDSAKey("e2e"), issuer: issuer}
}

// token returns a token for user, valid for ttl.
func (s *signer) token(user string, ttl time.Duration) string {
	return s.Sign(testjwt.Valid(user, s.issuer, "muejam-edge", time.Now(), ttl))
}
