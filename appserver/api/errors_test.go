package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/muejam/edge/appserver/dbrouter"
	"github.com/muejam/edge/appserver/identity"
)

func TestFail(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		status     int
		retryAfter string
		body       string
	}{
		{"api error", fmt.Errorf("loading: %w", ErrNotFound), 404, "",
			`{"error":{"code":"not_found","message":"no such resource"}}`},
		{"details", &Error{Code: "invalid_request", Message: "validation failed", Details: map[string]string{"a": "b"}}, 400, "",
			`{"error":{"code":"invalid_request","message":"validation failed","details":{"a":"b"}}}`},
		{"retry after", &Error{Code: "unavailable", Message: "retry", RetryAfter: 5 * time.Second}, 503, "5",
			`{"error":{"code":"unavailable","message":"retry"}}`},
		{"no primary", fmt.Errorf("saving story: %w", &dbrouter.PrimaryUnavailableError{RetryAfter: 1500 * time.Millisecond}), 503, "2",
			`{"error":{"code":"database_unavailable","message":"the database cannot take writes right now; retry later"}}`},
		{"no primary, short wait", &dbrouter.PrimaryUnavailableError{RetryAfter: time.Millisecond}, 503, "1", ""},
		{"unknown code", &Error{Code: "no_such_code", Message: "x"}, 500, "",
			`{"error":{"code":"internal","message":"internal error"}}`},
		{"other", errors.New("boom"), 500, "", `{"error":{"code":"internal","message":"internal error"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			Fail(rec, httptest.NewRequest("GET", "/", nil), zap.NewNop(), tt.err)
			if rec.Code != tt.status || StatusOf(tt.err) != tt.status || rec.Header().Get("Retry-After") != tt.retryAfter {
				t.Errorf("%d (StatusOf %d) Retry-After %q, want %d %q", rec.Code, StatusOf(tt.err), rec.Header().Get("Retry-After"), tt.status, tt.retryAfter)
			}
			if got := strings.TrimSpace(rec.Body.String()); tt.body != "" && got != tt.body {
				t.Errorf("body %s, want %s", got, tt.body)
			}
		})
	}
	// A cancelled request gets no answer.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rec := httptest.NewRecorder()
	Fail(rec, httptest.NewRequest("GET", "/", nil).WithContext(ctx), zap.NewNop(), context.Canceled)
	if rec.Body.Len() != 0 {
		t.Errorf("cancelled request answered %d %s", rec.Code, rec.Body)
	}
}

// TestErrorsHaveStatuses: every error this package returns has a code in the table.
func TestErrorsHaveStatuses(t *testing.T) {
	for _, e := range []*Error{ErrNotFound, ErrUnauthenticated, ErrVersionConflict, ErrPreconditionFailed, ErrPreconditionRequired, ErrDatabaseUnavailable,
		Errorf("invalid_json", ""), Errorf("body_too_large", ""), Errorf("unsupported_media_type", "")} {
		if _, ok := statuses[e.Code]; !ok {
			t.Errorf("%s has no status", e.Code)
		}
	}
}

func TestHandle(t *testing.T) {
	h := Handle(zap.NewNop(), func(w http.ResponseWriter, r *http.Request) error {
		if r.URL.Path == "/fail" {
			return ErrVersionConflict
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
	for path, want := range map[string]int{"/fail": http.StatusConflict, "/ok": http.StatusNoContent} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if rec.Code != want {
			t.Errorf("%s: %d, want %d", path, rec.Code, want)
		}
	}
}

// TestRequireUser: an anonymous request is 401 unauthenticated, private, and never reaches
// the handler; a signed-in one does.
func TestRequireUser(t *testing.T) {
	h := RequireUser(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != http.StatusUnauthorized || rec.Header().Get("Cache-Control") != "private, no-store" ||
		rec.Body.String() != `{"error":{"code":"unauthenticated","message":"this route needs a signed-in user"}}`+"\n" {
		t.Errorf("anonymous: %d %v %s", rec.Code, rec.Header(), rec.Body)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil).WithContext(identity.WithUser(t.Context(), "alice")))
	if rec.Code != http.StatusNoContent {
		t.Errorf("signed in: %d", rec.Code)
	}
}

// TestReject: the code's status and body, the caller's headers kept, none added; a code
// missing from the table is a 500.
func TestReject(t *testing.T) {
	rec := httptest.NewRecorder()
	rec.Header().Set("Allow", "GET, HEAD")
	Reject(rec, Errorf("method_not_allowed", "method %s is not allowed here", "POST"))
	if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET, HEAD" || rec.Header().Get("Cache-Control") != "" ||
		rec.Body.String() != `{"error":{"code":"method_not_allowed","message":"method POST is not allowed here"}}`+"\n" {
		t.Errorf("405: %d %v %s", rec.Code, rec.Header(), rec.Body)
	}
	rec = httptest.NewRecorder()
	Reject(rec, &Error{Code: "no_such_code", Message: "x"})
	if rec.Code != http.StatusInternalServerError || !strings.Contains(rec.Body.String(), `"code":"internal"`) {
		t.Errorf("unknown code: %d %s", rec.Code, rec.Body)
	}
}

func TestSetToken(t *testing.T) {
	rec := httptest.NewRecorder()
	setToken(rec, "signed", 30*time.Second)
	if got := rec.Header().Get(dbrouter.TokenHeader); got != "signed" {
		t.Errorf("header %q", got)
	}
	cookies := rec.Result().Cookies()
	if len(cookies) != 1 || cookies[0].Name != dbrouter.TokenCookie || cookies[0].Value != "signed" || cookies[0].MaxAge != 30 ||
		!cookies[0].HttpOnly || cookies[0].Path != "/" || cookies[0].SameSite != http.SameSiteLaxMode {
		t.Errorf("cookies %+v", cookies)
	}
}
