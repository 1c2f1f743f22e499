// Package httpjson writes the app server's JSON responses: {"data": ...} on success and
// {"error": {"code", "message", "details"}} on failure.
package httpjson

import (
	"encoding/json"
	"net/http"
)

// ErrorBody is the body of every error response.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail describes one error: a stable machine-readable code, a message for people and
// optional details (for example, the fields that failed validation).
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Details any    `json:"details,omitempty"`
}

// Write sends v as JSON with the given status.
func Write(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	// The status line is out; an encoding error can only be a broken connection.
	_ = json.NewEncoder(w).Encode(v)
}

// Error sends an error body with the given status.
func Error(w http.ResponseWriter, status int, code, message string, details any) {
	Write(w, status, ErrorBody{Error: ErrorDetail{Code: code, Message: message, Details: details}})
}
