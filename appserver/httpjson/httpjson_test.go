package httpjson

import (
	"net/http/httptest"
	"testing"
)

func TestErrorCarriesTheRequestID(t *testing.T) {
	w := httptest.NewRecorder()
	Error(w, 404, "not_found", "no such resource", nil)
	if got := w.Body.String(); got != `{"error":{"code":"not_found","message":"no such resource"}}`+"\n" {
		t.Errorf("without a request id: %s", got)
	}
	w = httptest.NewRecorder()
	w.Header().Set("X-Request-Id", "r-1")
	InternalError(w)
	if got := w.Body.String(); got != `{"error":{"code":"internal","message":"internal error","request_id":"r-1"}}`+"\n" {
		t.Errorf("with a request id: %s", got)
	}
}
