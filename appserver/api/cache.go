package api

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/muejam/edge/appserver/httpjson"
	"github.com/muejam/edge/appserver/identity"
)

// Headers of the edge's cache contract (DESIGN.md): the edge stores a response under its
// Cache-Tags, and a Cache-Purge on any response drops every entry carrying those tags.
const (
	HeaderCacheTags  = "Cache-Tags"
	HeaderCachePurge = "Cache-Purge"
)

// Resource is a kind of public answer. Each kind has one CachePolicy, in one table: how
// long caches keep it fresh, and how long past that they may serve it stale.
type Resource int

// The kinds of public answers, each with the freshness the seed allows it.
const (
	Feed          Resource = iota // discovery feeds and search results: 1 to 5 minutes
	Whispers                      // whisper feeds and single whispers: 30 s to 2 minutes
	StoryMetadata                 // stories, chapters and public profiles: 5 to 15 minutes
	Suggestions                   // search suggestions: 10 to 30 minutes
	Document                      // the OpenAPI document, which changes only with a deploy
)

// CachePolicy is how long caches may keep an answer (RFC 9111, RFC 5861): fresh for
// MaxAge; for StaleWhileRevalidate after that, served stale at once while they revalidate
// it in the background; and for StaleIfError after that freshness ends, served stale when
// the app server fails (an error, a 500, 502, 503 or 504, an open breaker). Revalidation
// sends the answer's ETag back in If-None-Match and gets a 304 when nothing changed.
type CachePolicy struct {
	MaxAge, StaleWhileRevalidate, StaleIfError time.Duration
}

// policies is the cache policy of each Resource. MaxAge is the low end of the seed's
// range and StaleWhileRevalidate as long again, so an answer is never older than the high
// end while the app server is up. StaleIfError is how old an answer is still better than an
// error during an outage: hours for what changes rarely (story metadata, suggestions, the
// document), an hour for feeds, minutes for conversations.
var policies = [...]CachePolicy{
	Feed:          {MaxAge: time.Minute, StaleWhileRevalidate: time.Minute, StaleIfError: time.Hour},
	Whispers:      {MaxAge: 30 * time.Second, StaleWhileRevalidate: 30 * time.Second, StaleIfError: 15 * time.Minute},
	StoryMetadata: {MaxAge: 5 * time.Minute, StaleWhileRevalidate: 5 * time.Minute, StaleIfError: 6 * time.Hour},
	Suggestions:   {MaxAge: 10 * time.Minute, StaleWhileRevalidate: 10 * time.Minute, StaleIfError: 6 * time.Hour},
	Document:      {MaxAge: 5 * time.Minute, StaleWhileRevalidate: 5 * time.Minute, StaleIfError: 24 * time.Hour},
}

// Policy returns the cache policy of answers of kind k.
func (k Resource) Policy() CachePolicy { return policies[k] }

// CacheControl returns the Cache-Control field of a public answer under p, for example
// "public, max-age=60, stale-while-revalidate=60, stale-if-error=3600".
func (p CachePolicy) CacheControl() string {
	secs := func(d time.Duration) string { return strconv.FormatInt(int64(d/time.Second), 10) }
	return "public, max-age=" + secs(p.MaxAge) + ", stale-while-revalidate=" + secs(p.StaleWhileRevalidate) +
		", stale-if-error=" + secs(p.StaleIfError)
}

// Public marks a response as cacheable by anyone under the policy of its kind, and tags it.
// Write and WriteList then give it a strong ETag and answer conditional GETs with 304.
func Public(w http.ResponseWriter, kind Resource, tags ...string) {
	w.Header().Set("Cache-Control", kind.Policy().CacheControl())
	if len(tags) > 0 {
		w.Header().Set(HeaderCacheTags, strings.Join(tags, " "))
	}
}

// PublicPerViewer marks a response that depends on whose blocks filter it (a feed that hides
// the authors a viewer blocked) cacheable like Public, with Vary on the field in which the
// edge names them (identity.FilterHeader): one entry for anonymous readers and the users the
// edge knows to block nobody, who all get the same answer, and none that a reader whose
// blocks filter their answer could be given.
func PublicPerViewer(w http.ResponseWriter, kind Resource, tags ...string) {
	Public(w, kind, tags...)
	w.Header().Add("Vary", identity.FilterHeader)
}

// Private marks a response as personal: no cache stores it, so it carries no stale window.
func Private(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "private, no-store")
}

// Purge names the cache tags a mutation invalidates.
func Purge(w http.ResponseWriter, tags ...string) {
	if len(tags) > 0 {
		w.Header().Set(HeaderCachePurge, strings.Join(tags, " "))
	}
}

// isPublic reports whether the response was marked with Public or PublicPerViewer.
func isPublic(h http.Header) bool {
	return strings.HasPrefix(h.Get("Cache-Control"), "public")
}

// ContentETag is the strong entity tag of a representation: the first 16 bytes of the
// SHA-256 of its exact bytes, in hex, quoted.
func ContentETag(body []byte) string {
	sum := sha256.Sum256(body)
	return `"` + hex.EncodeToString(sum[:16]) + `"`
}

// noneMatch reports whether the If-None-Match of r matches etag, by the weak comparison
// RFC 9110 13.1.2 prescribes: "*", or a listed tag with the same opaque part, weak or not.
func noneMatch(r *http.Request, etag string) bool {
	tags, star := parseETags(r.Header.Values("If-None-Match"))
	if star {
		return true
	}
	for _, t := range tags {
		if t.opaque == etag {
			return true
		}
	}
	return false
}

// WriteJSON sends body, JSON from httpjson.Marshal, with status. A public answer (Public,
// PublicPerViewer) of 200 to a GET or HEAD gets ContentETag(body), replacing any ETag the
// handler set, and when the request's If-None-Match matches it, the answer is 304 Not
// Modified without a body, with the same ETag, Cache-Control, Cache-Tags and Vary, so a
// cache can keep serving what it has. Write and WriteList send through here.
func WriteJSON(w http.ResponseWriter, r *http.Request, status int, body []byte) {
	if status == http.StatusOK && (r.Method == http.MethodGet || r.Method == http.MethodHead) && isPublic(w.Header()) {
		etag := ContentETag(body)
		w.Header().Set("ETag", etag)
		if noneMatch(r, etag) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
	}
	httpjson.WriteBody(w, status, body)
}

// send encodes v and sends it with WriteJSON.
func send(w http.ResponseWriter, r *http.Request, status int, v any) {
	body, err := httpjson.Marshal(v)
	if err != nil {
		uncacheable(w)
		httpjson.InternalError(w) // a value that does not encode is a bug the tests catch
		return
	}
	WriteJSON(w, r, status, body)
}

// uncacheable takes back what Public and a handler's ETag put on a response that ends up
// an error: errors are never stored, and carry no validator or tags.
func uncacheable(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Del("ETag")
	h.Del(HeaderCacheTags)
}
