package api

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"unicode/utf8"
)

// ValidText reports whether s can be stored as PostgreSQL text: valid UTF-8 without NUL
// characters. Query parameters that reach SQL are checked with it.
func ValidText(s string) bool {
	return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}

// nulProblem is the validation message of a field holding NUL.
const nulProblem = `must not contain NUL characters (\u0000)`

// CheckText returns nil when every string of doc, a valid JSON document that is UTF-8
// (keys and values, at any depth), can be stored as PostgreSQL text, and else a 400
// invalid_request error naming the top-level field that holds a NUL character. Raw NUL
// bytes are not JSON; only the escape \u0000 makes one, and this finds it without decoding.
func CheckText(doc []byte) error {
	if !hasNULEscape(doc) {
		return nil
	}
	// Rare: decode again to say where it is.
	var v any
	_ = json.Unmarshal(doc, &v) // doc is valid JSON
	if obj, ok := v.(map[string]any); ok {
		for _, k := range slices.Sorted(maps.Keys(obj)) {
			if !holdsNUL(k) && holdsNUL(obj[k]) {
				return &Error{Code: "invalid_request", Message: "validation failed",
					Details: map[string]string{k: nulProblem}}
			}
		}
	}
	return Errorf("invalid_request", "text "+nulProblem)
}

// hasNULEscape reports whether the valid JSON document doc has a \u0000 escape. In valid
// JSON a backslash occurs only in a string, where it starts an escape whose next byte names
// it, so skipping that byte is enough to tell an escaped backslash from an escape.
func hasNULEscape(doc []byte) bool {
	for i := 0; i+1 < len(doc); i++ {
		if doc[i] != '\\' {
			continue
		}
		if doc[i+1] == 'u' && i+6 <= len(doc) && string(doc[i+2:i+6]) == "0000" {
			return true
		}
		i++ // the escaped byte
	}
	return false
}

// holdsNUL reports whether v, a value decoded from JSON into any, holds a NUL character in
// a string, an object key included, at any depth.
func holdsNUL(v any) bool {
	switch v := v.(type) {
	case string:
		return strings.IndexByte(v, 0) >= 0
	case []any:
		return slices.ContainsFunc(v, holdsNUL)
	case map[string]any:
		for k, x := range v {
			if holdsNUL(k) || holdsNUL(x) {
				return true
			}
		}
	}
	return false
}
