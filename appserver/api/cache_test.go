package api

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/muejam/edge/appserver/identity"
)

func TestCachePolicies(t *testing.T) {
	tests := []struct {
		kind    Resource
		control string
		maxOf   time.Duration // the high end of the seed's range for this kind
	}{
		{Feed, "public, max-age=60, stale-while-revalidate=60, stale-if-error=3600", 5 * time.Minute},
		{Whispers, "public, max-age=30, stale-while-revalidate=30, stale-if-error=900", 2 * time.Minute},
		{StoryMetadata, "public, max-age=300, stale-while-revalidate=300, stale-if-error=21600", 15 * time.Minute},
		{Suggestions, "public, max-age=600, stale-while-revalidate=600, stale-if-error=21600", 30 * time.Minute},
		{Document, "public, max-age=300, stale-while-revalidate=300, stale-if-error=86400", 24 * time.Hour},
	}
	if len(tests) != len(policies) {
		t.Errorf("%d kinds tested, %d in the table", len(tests), len(policies))
	}
	for _, tt := range tests {
		p := tt.kind.Policy()
		if got := p.CacheControl(); got != tt.control {
			t.Errorf("kind %d: %q, want %q", tt.kind, got, tt.control)
		}
		if p.MaxAge+p.StaleWhileRevalidate > tt.maxOf || p.StaleIfError < p.MaxAge+p.StaleWhileRevalidate {
			t.Errorf("kind %d: %+v: fresh and revalidating beyond %v, or an error window shorter than that", tt.kind, p, tt.maxOf)
		}
	}
}

func TestParseETags(t *testing.T) {
	tests := []struct {
		values []string
		tags   []entityTag
		star   bool
	}{
		{[]string{`"a"`}, []entityTag{{false, `"a"`}}, false},
		{[]string{`W/"a", "b"`, ` "c" `}, []entityTag{{true, `"a"`}, {false, `"b"`}, {false, `"c"`}}, false},
		{[]string{`"a,b", "c"`}, []entityTag{{false, `"a,b"`}, {false, `"c"`}}, false},
		{[]string{`*`}, nil, true},
		{[]string{`garbage, "x", W/y, "unterminated`}, []entityTag{{false, `"x"`}}, false},
		{[]string{``, `,,`}, nil, false},
	}
	for _, tt := range tests {
		tags, star := parseETags(tt.values)
		if !slices.Equal(tags, tt.tags) || star != tt.star {
			t.Errorf("parseETags(%q) = %v %v, want %v %v", tt.values, tags, star, tt.tags, tt.star)
		}
	}
}

// cacheable answers like a handler: with public, per-viewer, private, or no cache headers.
func cacheable(mark string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		switch mark {
		case "public":
			Public(w, StoryMetadata, "story:1")
		case "per-viewer":
			PublicPerViewer(w, Feed, "feed:new")
		case "private":
			Private(w)
			w.Header().Set("ETag", ETag(3))
		}
		Write(w, r, http.StatusOK, map[string]string{"title": "x"})
	}
}

func TestConditionalGET(t *testing.T) {
	body := []byte(`{"data":{"title":"x"}}` + "\n")
	etag := ContentETag(body)
	if !regexp.MustCompile(`^"[0-9a-f]{32}"$`).MatchString(etag) {
		t.Fatalf("ContentETag = %s, want 16 bytes of hex, quoted", etag)
	}
	tests := []struct {
		name, mark, method, ifNoneMatch string
		status                          int
	}{
		{"no validator", "public", "GET", "", http.StatusOK},
		{"same tag", "public", "GET", etag, http.StatusNotModified},
		{"weak comparison", "public", "GET", "W/" + etag, http.StatusNotModified},
		{"in a list", "public", "GET", `"other", ` + etag, http.StatusNotModified},
		{"star", "public", "GET", "*", http.StatusNotModified},
		{"another tag", "public", "GET", `"other"`, http.StatusOK},
		{"HEAD", "public", "HEAD", etag, http.StatusNotModified},
		{"per viewer", "per-viewer", "GET", etag, http.StatusNotModified},
		{"not a GET", "public", "POST", etag, http.StatusOK},
		{"private", "private", "GET", "*", http.StatusOK},
		{"unmarked", "", "GET", "*", http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, "/", nil)
			if tt.ifNoneMatch != "" {
				r.Header.Set("If-None-Match", tt.ifNoneMatch)
			}
			rec := httptest.NewRecorder()
			cacheable(tt.mark)(rec, r)
			h := rec.Header()
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d", rec.Code, tt.status)
			}
			switch {
			case tt.mark == "private" && h.Get("ETag") != `"v3"`:
				t.Errorf("private answer: ETag %q, want the handler's", h.Get("ETag"))
			case (tt.mark == "" || tt.method == "POST") && h.Get("ETag") != "":
				t.Errorf("unmarked answer or not a GET: ETag %q", h.Get("ETag"))
			case tt.mark == "" || tt.method == "POST":
			case (tt.mark == "public" || tt.mark == "per-viewer") && h.Get("ETag") != etag:
				t.Errorf("ETag %q, want %s", h.Get("ETag"), etag)
			}
			if tt.status == http.StatusNotModified {
				if rec.Body.Len() != 0 || h.Get("Content-Type") != "" || h.Get("Content-Length") != "" {
					t.Errorf("304 with a body %q or a Content-Type/Length %v", rec.Body, h)
				}
				want := StoryMetadata.Policy().CacheControl()
				if tt.mark == "per-viewer" {
					want = Feed.Policy().CacheControl()
				}
				if h.Get("Cache-Control") != want || h.Get(HeaderCacheTags) == "" {
					t.Errorf("304 without the 200's cache headers: %v", h)
				}
				if tt.mark == "per-viewer" && h.Get("Vary") != identity.FilterHeader {
					t.Errorf("304 without Vary: %v", h)
				}
			} else if tt.method == "GET" && rec.Body.String() != string(body) {
				t.Errorf("body %q, want %q", rec.Body, body)
			}
		})
	}
}

// TestErrorsAreUncacheable: an answer that fails after a handler marked it public carries
// no-store, and none of the stale windows, ETag or tags of the public answer.
func TestErrorsAreUncacheable(t *testing.T) {
	for _, err := range []error{ErrNotFound, errors.New("boom"), Errorf("invalid_request", "no")} {
		rec := httptest.NewRecorder()
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("If-None-Match", "*")
		Public(rec, Feed, "feed:new")
		rec.Header().Set("ETag", ETag(1))
		Fail(rec, r, zap.NewNop(), err)
		h := rec.Header()
		if rec.Code < 400 || h.Get("Cache-Control") != "no-store" || strings.Contains(h.Get("Cache-Control"), "stale") ||
			h.Get("ETag") != "" || h.Get(HeaderCacheTags) != "" {
			t.Errorf("%v: %d %v", err, rec.Code, h)
		}
	}
}
