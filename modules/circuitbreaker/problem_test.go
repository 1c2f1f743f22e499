package circuitbreaker

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

func TestProblemBodyCarriesTheRequestID(t *testing.T) {
	r := httptest.NewRequest("GET", "/", nil)
	if got := problemBody(r, http.StatusBadGateway); string(got) != string(problems[http.StatusBadGateway]) {
		t.Errorf("without a replacer: %s", got)
	}
	repl := caddy.NewReplacer()
	repl.Set("http.request.uuid", "3f1c-req")
	r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
	for status := range problems {
		var doc map[string]any
		if err := json.Unmarshal(problemBody(r, status), &doc); err != nil {
			t.Fatal(err)
		}
		if doc["request_id"] != "3f1c-req" || doc["status"] != float64(status) {
			t.Errorf("%d: %v", status, doc)
		}
	}
}
