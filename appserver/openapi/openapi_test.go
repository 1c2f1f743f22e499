package openapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

// The document itself (valid OpenAPI 3.1, every route of the app server and no other) is
// checked by the app server's tests, which can run its route registration.

func TestToJSON(t *testing.T) {
	tests := []struct{ yaml, want string }{
		{"b: 1\na: [x, 2.5, true, null]\n", `{"b":1,"a":["x",2.5,true,null]}`},
		{"responses:\n  200: ok\n  '404': {description: gone}\n", `{"responses":{"200":"ok","404":{"description":"gone"}}}`},
		{"base: &b {x: 1}\nuse: *b\n", `{"base":{"x":1},"use":{"x":1}}`},
		{"s: 'line\n\n  two'\nq: \"\\\"\"\n", `{"s":"line\ntwo","q":"\""}`},
	}
	for _, tt := range tests {
		got, err := toJSON([]byte(tt.yaml))
		if err != nil || string(got) != tt.want {
			t.Errorf("toJSON(%q) = %s, %v; want %s", tt.yaml, got, err, tt.want)
		}
	}
	for _, bad := range []string{"a: [", "a: 1\n---\nb: 2\n", ""} {
		if got, err := toJSON([]byte(bad)); err == nil {
			t.Errorf("toJSON(%q) = %s, want an error", bad, got)
		}
	}
}

func TestHandlerServesTheDocument(t *testing.T) {
	rec := httptest.NewRecorder()
	Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/openapi.json", nil))
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" ||
		rec.Header().Get("Cache-Control") != "public, max-age=300, stale-while-revalidate=300, stale-if-error=86400" {
		t.Errorf("GET = %d %v", rec.Code, rec.Header())
	}
	var doc struct {
		OpenAPI string                     `json:"openapi"`
		Paths   map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil || doc.OpenAPI != "3.1.0" || doc.Paths["/v1/stories/{id}"] == nil {
		t.Errorf("served document: openapi %q, %d paths, %v", doc.OpenAPI, len(doc.Paths), err)
	}
}
