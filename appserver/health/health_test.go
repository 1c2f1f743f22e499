package health

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestCheckerReportsEveryCheck(t *testing.T) {
	up := func(context.Context) (map[string]any, error) { return map[string]any{"role": "primary"}, nil }
	down := func(context.Context) (map[string]any, error) { return nil, errors.New("connection refused") }
	slow := func(ctx context.Context) (map[string]any, error) { <-ctx.Done(); return nil, ctx.Err() }

	tests := []struct {
		name     string
		checks   []Check
		wantCode int
		wantDown []string
	}{
		{"all up", []Check{{"a", up}, {"b", up}}, http.StatusOK, nil},
		{"one down", []Check{{"a", up}, {"b", down}}, http.StatusServiceUnavailable, []string{"b"}},
		{"timeout", []Check{{"a", slow}, {"b", up}}, http.StatusServiceUnavailable, []string{"a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			New(20*time.Millisecond, tt.checks...).ServeHTTP(rec, httptest.NewRequest("GET", "/v1/health", nil))
			if rec.Code != tt.wantCode {
				t.Errorf("status %d, want %d", rec.Code, tt.wantCode)
			}
			if cc := rec.Header().Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control %q", cc)
			}
			var rep Report
			if err := json.Unmarshal(rec.Body.Bytes(), &rep); err != nil {
				t.Fatal(err)
			}
			if len(rep.Checks) != len(tt.checks) {
				t.Fatalf("checks %v", rep.Checks)
			}
			for _, d := range tt.wantDown {
				if rep.Checks[d].Status != "down" || rep.Checks[d].Error == "" {
					t.Errorf("check %s = %+v, want down with an error", d, rep.Checks[d])
				}
			}
			if rep.Checks["a"].Status == "up" && rep.Checks["a"].Details["role"] != "primary" {
				t.Errorf("details lost: %+v", rep.Checks["a"])
			}
		})
	}
}

func TestChecksRunConcurrently(t *testing.T) {
	// Each probe waits for the other: run one after the other, both would time out.
	a, b := make(chan struct{}), make(chan struct{})
	meet := func(mine, theirs chan struct{}) Probe {
		return func(ctx context.Context) (map[string]any, error) {
			close(mine)
			select {
			case <-theirs:
				return nil, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
	}
	rep := New(5*time.Second, Check{"a", meet(a, b)}, Check{"b", meet(b, a)}).Run(context.Background())
	if rep.Status != "healthy" {
		t.Errorf("report %+v", rep)
	}
}
