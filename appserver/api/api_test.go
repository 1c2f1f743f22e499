package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParsePrecondition(t *testing.T) {
	v := func(n int64) *int64 { return &n }
	tests := []struct {
		name     string
		ifMatch  string
		body     *int64
		current  int64
		want     bool
		failWith error
	}{
		{"body version matches", "", v(3), 3, true, nil},
		{"body version stale", "", v(2), 3, false, ErrVersionConflict},
		{"etag matches", `"v3"`, nil, 3, true, nil},
		{"etag in a list", `"v1", "v3"`, nil, 3, true, nil},
		{"etag stale", `"v2"`, v(3), 3, false, ErrPreconditionFailed}, // the header wins
		{"weak etag never matches", `W/"v3"`, nil, 3, false, ErrPreconditionFailed},
		{"garbage etag", `v3`, nil, 3, false, ErrPreconditionFailed},
		{"star", `*`, nil, 7, true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("PATCH", "/", nil)
			if tt.ifMatch != "" {
				r.Header.Set("If-Match", tt.ifMatch)
			}
			p, err := ParsePrecondition(r, tt.body)
			if err != nil {
				t.Fatal(err)
			}
			if got := p.Matches(tt.current); got != tt.want {
				t.Errorf("Matches(%d) = %v, want %v", tt.current, got, tt.want)
			}
			if !tt.want && !errors.Is(p.Failed(), tt.failWith) {
				t.Errorf("Failed() = %v, want %v", p.Failed(), tt.failWith)
			}
		})
	}
	if _, err := ParsePrecondition(httptest.NewRequest("PATCH", "/", nil), nil); !errors.Is(err, ErrPreconditionRequired) {
		t.Errorf("no precondition: %v, want 428", err)
	}
	if p := ParseOptionalPrecondition(httptest.NewRequest("POST", "/", nil), nil); !p.Matches(42) {
		t.Error("an optional precondition that was not sent must match")
	}
}

func TestPagination(t *testing.T) {
	type pos struct{ N int }
	p, err := ParsePage(httptest.NewRequest("GET", "/?limit=2", nil))
	if err != nil || p.Limit != 2 {
		t.Fatalf("ParsePage: %+v %v", p, err)
	}
	items, next := Trim(p, []pos{{1}, {2}, {3}}, func(x pos) any { return x })
	if len(items) != 2 || next == "" {
		t.Fatalf("Trim = %v %q", items, next)
	}
	p, err = ParsePage(httptest.NewRequest("GET", "/?cursor="+next, nil))
	var after pos
	if ok, err2 := p.After(&after); err != nil || err2 != nil || !ok || after.N != 2 || p.Limit != DefaultLimit {
		t.Errorf("cursor round trip: %+v %v %v %v", after, ok, err, err2)
	}
	if _, next := Trim(p, []pos{{1}}, func(x pos) any { return x }); next != "" {
		t.Errorf("last page has a next cursor %q", next)
	}
	for _, q := range []string{"limit=0", "limit=101", "limit=ten"} {
		if _, err := ParsePage(httptest.NewRequest("GET", "/?"+q, nil)); err == nil {
			t.Errorf("%s accepted", q)
		}
	}
	p, _ = ParsePage(httptest.NewRequest("GET", "/?cursor=%25%25", nil))
	if _, err := p.After(&after); err == nil {
		t.Error("garbage cursor accepted")
	}
}

func TestDecode(t *testing.T) {
	type in struct {
		Name string `json:"name"`
	}
	tests := []struct {
		body, ctype string
		status      int
	}{
		{`{"name":"x"}`, "application/json; charset=utf-8", 0},
		{`{"name":"x"}`, "", 0},
		{`{"name":"x"}`, "text/plain", http.StatusUnsupportedMediaType},
		{`{"name":1}`, "", http.StatusBadRequest},
		{`{"nom":"x"}`, "", http.StatusBadRequest},
		{`{"name":"x"} {}`, "", http.StatusBadRequest},
		{``, "", http.StatusBadRequest},
		{`{"name":"` + strings.Repeat("x", MaxBodyBytes) + `"}`, "", http.StatusRequestEntityTooLarge},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("POST", "/", strings.NewReader(tt.body))
		if tt.ctype != "" {
			r.Header.Set("Content-Type", tt.ctype)
		}
		var dst in
		err := Decode(httptest.NewRecorder(), r, &dst)
		var ae *Error
		switch {
		case tt.status == 0 && (err != nil || dst.Name != "x"):
			t.Errorf("%.40q: %v %+v", tt.body, err, dst)
		case tt.status != 0 && (!errors.As(err, &ae) || StatusOf(err) != tt.status):
			t.Errorf("%.40q: %v, want status %d", tt.body, err, tt.status)
		}
	}
}

func TestDecodeRejectsTextPostgresCannotStore(t *testing.T) {
	type in struct {
		Title string            `json:"title"`
		Tags  []string          `json:"tags"`
		Meta  map[string]string `json:"meta"`
	}
	tests := []struct {
		name, body string
		code       string            // "" when the body is accepted
		details    map[string]string // of invalid_request
	}{
		{"plain", `{"title":"x","tags":["a"],"meta":{"k":"v"}}`, "", nil},
		{"other escapes", `{"title":"\u0001\u00e9\ud83d\ude00\t"}`, "", nil},
		{"escaped backslash then u0000", `{"title":"\\u0000"}`, "", nil},
		{"escaped backslashes then an escape", `{"title":"\\\\\u0000"}`, "invalid_request", map[string]string{"title": nulProblem}},
		{"NUL in a field", `{"title":"a\u0000b"}`, "invalid_request", map[string]string{"title": nulProblem}},
		{"NUL in a list", `{"title":"x","tags":["ok","\u0000"]}`, "invalid_request", map[string]string{"tags": nulProblem}},
		{"NUL in a nested value", `{"meta":{"k":"v\u0000"}}`, "invalid_request", map[string]string{"meta": nulProblem}},
		{"NUL in a nested key", `{"meta":{"k\u0000":"v"}}`, "invalid_request", map[string]string{"meta": nulProblem}},
		{"invalid UTF-8", "{\"title\":\"\xff\"}", "invalid_json", nil},
		{"truncated UTF-8", "{\"title\":\"\xe2\x82\"}", "invalid_json", nil},
		{"UTF-8 surrogate", "{\"title\":\"\xed\xa0\x80\"}", "invalid_json", nil},
		{"raw NUL", "{\"title\":\"\x00\"}", "invalid_json", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var dst in
			err := Decode(httptest.NewRecorder(), httptest.NewRequest("POST", "/", strings.NewReader(tt.body)), &dst)
			var ae *Error
			switch {
			case tt.code == "" && err != nil:
				t.Fatalf("rejected: %v", err)
			case tt.code == "":
				return
			case !errors.As(err, &ae):
				t.Fatalf("err = %v, want a 400 %s", err, tt.code)
			case StatusOf(err) != http.StatusBadRequest || ae.Code != tt.code:
				t.Errorf("err = %d %s %q, want 400 %s", StatusOf(err), ae.Code, ae.Message, tt.code)
			}
			if tt.details != nil && !reflect.DeepEqual(ae.Details, tt.details) {
				t.Errorf("details = %v, want %v", ae.Details, tt.details)
			}
		})
	}
	// Not an object: no field to name, still a 400.
	var dst any
	err := Decode(httptest.NewRecorder(), httptest.NewRequest("POST", "/", strings.NewReader(`["\u0000"]`)), &dst)
	if ae := (*Error)(nil); !errors.As(err, &ae) || StatusOf(err) != http.StatusBadRequest || ae.Code != "invalid_request" || ae.Details != nil {
		t.Errorf("array with NUL: %v", err)
	}
}

func TestValidText(t *testing.T) {
	for s, want := range map[string]bool{"": true, "héllo 😀": true, "a\x00b": false, "\xff": false, "\xed\xa0\x80": false} {
		if got := ValidText(s); got != want {
			t.Errorf("ValidText(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestCursorWithUnstorableText(t *testing.T) {
	var pos struct {
		Name string `json:"n"`
	}
	for _, raw := range []string{`{"n":"a\u0000"}`, "{\"n\":\"\xff\"}"} {
		p, err := ParsePage(httptest.NewRequest("GET", "/?cursor="+base64.RawURLEncoding.EncodeToString([]byte(raw)), nil))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.After(&pos); err == nil {
			t.Errorf("cursor %q accepted: %+v", raw, pos)
		}
	}
	p, _ := ParsePage(httptest.NewRequest("GET", "/?cursor="+Cursor(struct {
		Name string `json:"n"`
	}{"héllo"}), nil))
	if ok, err := p.After(&pos); !ok || err != nil || pos.Name != "héllo" {
		t.Errorf("a cursor of ours: %v %v %+v", ok, err, pos)
	}
}

// FuzzDecode checks Decode against a slow oracle: a body is accepted exactly when it is
// UTF-8, one JSON value, and no string in it (key or value, at any depth) holds NUL; and
// what it accepts holds only text PostgreSQL can store.
func FuzzDecode(f *testing.F) {
	for _, seed := range []string{
		`{"title":"x"}`, `{"title":"a\u0000b"}`, `{"a":["x",{"b":"\u0000"}]}`, `{"k\u0000":1}`,
		`{"a":"\\u0000"}`, `{"a":"\\\u0000"}`, `{"a":"\\\\u0000"}`, `"\u0000"`, `["\u00000"]`,
		`{"a":"\ud800"}`, `{"a":"\u0000`, "{\"a\":\"\xff\"}", "{\"a\":\"\x00\"}", `{} {}`, ``, `1e999`,
		`{"a":"\u000"}`, `\u0000`, `{"a":{"b":{"c":["\u0000"]}}}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var got any
		err := Decode(httptest.NewRecorder(), httptest.NewRequest("POST", "/", bytes.NewReader(body)), &got)
		var oracle any
		want := utf8.Valid(body) && json.Unmarshal(body, &oracle) == nil && !holdsNUL(oracle)
		if (err == nil) != want {
			t.Fatalf("Decode(%q) = %v, want accepted %v", body, err, want)
		}
		var ae *Error
		if err != nil && (!errors.As(err, &ae) || StatusOf(err) != http.StatusBadRequest) {
			t.Fatalf("Decode(%q) = %v, want a 400 *Error", body, err)
		}
		if err == nil && !storable(got) {
			t.Fatalf("Decode(%q) accepted %#v", body, got)
		}
	})
}

// storable reports whether every string in v, decoded from JSON, passes ValidText.
func storable(v any) bool {
	switch v := v.(type) {
	case string:
		return ValidText(v)
	case []any:
		for _, x := range v {
			if !storable(x) {
				return false
			}
		}
	case map[string]any:
		for k, x := range v {
			if !ValidText(k) || !storable(x) {
				return false
			}
		}
	}
	return true
}
