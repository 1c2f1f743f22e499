// Package httpjson writes the app server's JSON responses: {"data": ...} on success and
// {"error": {"code", "message", "details", "request_id"}} on failure.
package httpjson

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// ErrorBody is the body of every error response.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail describes one error: a stable machine-readable code, a message for people and
// optional details (for example, the fields that failed validation), and the request id
// (the response's X-Request-Id) that finds the request in the edge's and the app's logs.
type ErrorDetail struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	Details   any    `json:"details,omitempty"`
	RequestID string `json:"request_id,omitempty"`
}

// Marshal returns v as Write sends it: its JSON (HTML characters escaped) and a newline.
func Marshal(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// WriteBody sends body, JSON from Marshal, with the given status.
func WriteBody(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	// The status line is out; an error can only be a broken connection.
	_, _ = w.Write(body)
}

// Write sends v as JSON with the given status. A value that does not encode (a bug, such as
// a NaN) is answered with InternalError instead of a truncated body.
func Write(w http.ResponseWriter, status int, v any) {
	body, err := Marshal(v)
	if err != nil {
		InternalError(w)
		return
	}
	WriteBody(w, status, body)
}

// Error sends an error body with the given status, carrying the X-Request-Id already set on
// the response (see package reqid), if any.
func Error(w http.ResponseWriter, status int, code, message string, details any) {
	Write(w, status, ErrorBody{Error: ErrorDetail{Code: code, Message: message, Details: details,
		RequestID: w.Header().Get("X-Request-Id")}})
}

// InternalError answers 500 "internal error", which no cache stores: all a client learns of
// a failure that is the server's own (the caller logs the cause).
func InternalError(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	Error(w, http.StatusInternalServerError, "internal", "internal error", nil)
}
