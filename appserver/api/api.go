// Package api holds what every handler of the /v1 API shares: the response envelope
// ({"data": ..., "next_cursor": ...}), request decoding and validation with per-field
// details (Validator, its text rules), routes that need a signed-in user (RequireUser),
// errors mapped to statuses in one place, opaque pagination cursors, optimistic
// concurrency preconditions (version / If-Match), the edge's cache headers (one table of
// cache policies, strong ETags, conditional GETs) and the refusal of text PostgreSQL cannot
// store (NUL, invalid UTF-8).
package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/muejam/edge/appserver/httpjson"
)

// MaxBodyBytes bounds a request body.
const MaxBodyBytes = 1 << 20

// Mux is what each package's Register adds its routes to: an *http.ServeMux in the app
// server, or anything that takes patterns the same way (the app server's tests record the
// routes with one, to check them against the OpenAPI document).
type Mux interface {
	Handle(pattern string, handler http.Handler)
	HandleFunc(pattern string, handler func(http.ResponseWriter, *http.Request))
}

// Write sends {"data": v} with the given status, through WriteJSON: a public answer gets
// a strong ETag and conditional GETs a 304.
func Write(w http.ResponseWriter, r *http.Request, status int, v any) {
	send(w, r, status, struct {
		Data any `json:"data"`
	}{v})
}

// WriteList sends {"data": items, "next_cursor": next} with 200, as Write does; next is
// null when next is "".
func WriteList[T any](w http.ResponseWriter, r *http.Request, items []T, next string) {
	send(w, r, http.StatusOK, listBody(items, next))
}

// ListBody is the body WriteList sends, encoded: {"data": items, "next_cursor": next}.
func ListBody[T any](items []T, next string) ([]byte, error) {
	return httpjson.Marshal(listBody(items, next))
}

// list is the body of a list answer.
type list[T any] struct {
	Data       []T     `json:"data"`
	NextCursor *string `json:"next_cursor"`
}

func listBody[T any](items []T, next string) list[T] {
	if items == nil {
		items = []T{}
	}
	var cursor *string
	if next != "" {
		cursor = &next
	}
	return list[T]{items, cursor}
}

// Decode reads the JSON request body into dst. Unknown fields, trailing data, a body over
// MaxBodyBytes and a content type other than JSON are errors (400 or 415), and so is text
// PostgreSQL cannot store, in any field at any depth: a body that is not UTF-8 is not JSON
// (400 invalid_json), and a string holding NUL (\u0000) is 400 invalid_request (CheckText).
func Decode(w http.ResponseWriter, r *http.Request, dst any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(strings.ToLower(ct), "application/json") {
		return Errorf("unsupported_media_type", "send the body as application/json")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return Errorf("body_too_large", "the body is larger than %d bytes", MaxBodyBytes)
	case err != nil:
		return Errorf("invalid_json", "the body could not be read: %v", err)
	case !utf8.Valid(body):
		return Errorf("invalid_json", "the body is not valid JSON: it is not UTF-8 text")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	err = dec.Decode(dst)
	if err == nil && dec.Decode(&struct{}{}) != io.EOF {
		err = errors.New("trailing data after the JSON value")
	}
	var typeErr *json.UnmarshalTypeError
	switch {
	case err == nil:
		return CheckText(body)
	case errors.As(err, &typeErr) && typeErr.Field != "":
		return &Error{Code: "invalid_request", Message: "validation failed",
			Details: map[string]string{typeErr.Field: "must be a " + jsonType(typeErr.Type.Kind().String())}}
	case errors.Is(err, io.EOF):
		return Errorf("invalid_json", "the body is empty; send a JSON object")
	default:
		return Errorf("invalid_json", "the body is not valid JSON: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
}

func jsonType(kind string) string {
	switch kind {
	case "string":
		return "string"
	case "slice", "array":
		return "list"
	case "struct", "map":
		return "object"
	case "bool":
		return "boolean"
	default:
		return "number"
	}
}

// IsUniqueViolation reports whether err is a unique violation (23505) of the named
// constraint or index.
func IsUniqueViolation(err error, constraint string) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505" && pe.ConstraintName == constraint
}
