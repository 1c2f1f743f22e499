package api

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
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
		case tt.status != 0 && (!errors.As(err, &ae) || ae.Status != tt.status):
			t.Errorf("%.40q: %v, want status %d", tt.body, err, tt.status)
		}
	}
}
