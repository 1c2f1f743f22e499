package api

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/muejam/edge/appserver/identity"
)

// Headers of the edge's cache contract (DESIGN.md): the edge stores a response under its
// Cache-Tags, and a Cache-Purge on any response drops every entry carrying those tags.
const (
	HeaderCacheTags  = "Cache-Tags"
	HeaderCachePurge = "Cache-Purge"
)

// StoryMetadataMaxAge is how long the edge may cache public story metadata (the seed
// allows 5 to 15 minutes).
const StoryMetadataMaxAge = 5 * time.Minute

// Public marks a response cacheable by anyone for maxAge, under tags.
func Public(w http.ResponseWriter, maxAge time.Duration, tags ...string) {
	w.Header().Set("Cache-Control", "public, max-age="+strconv.Itoa(int(maxAge.Seconds())))
	if len(tags) > 0 {
		w.Header().Set(HeaderCacheTags, strings.Join(tags, " "))
	}
}

// PublicPerViewer marks a response that depends on who asks (a feed that hides the authors
// a viewer blocked) cacheable for maxAge under tags, one variant per viewer: Vary names the
// identity header the edge sets from the verified token, so anonymous requests share one
// entry and a signed-in viewer never gets another viewer's (or the anonymous) answer.
func PublicPerViewer(w http.ResponseWriter, maxAge time.Duration, tags ...string) {
	Public(w, maxAge, tags...)
	w.Header().Add("Vary", identity.Header)
}

// Private marks a response as personal: no cache stores it.
func Private(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "private, no-store")
}

// Purge names the cache tags a mutation invalidates.
func Purge(w http.ResponseWriter, tags ...string) {
	if len(tags) > 0 {
		w.Header().Set(HeaderCachePurge, strings.Join(tags, " "))
	}
}

// ETag is the entity tag of version v of a resource.
func ETag(v int64) string { return `"v` + strconv.FormatInt(v, 10) + `"` }

// Precondition is the version of a resource a write was based on. The zero value expects
// nothing (If-Match: *).
type Precondition struct {
	versions   []int64 // any of them matches; none when the header was "*"
	any        bool
	fromHeader bool
}

// ParsePrecondition reads the version a write expects: the If-Match header (ETags from
// ETag; "*" matches any version) or, without it, the version sent in the body. Neither is
// 428: every edit must say what it edited.
func ParsePrecondition(r *http.Request, bodyVersion *int64) (Precondition, error) {
	if h := r.Header.Values("If-Match"); len(h) > 0 {
		p := Precondition{fromHeader: true}
		for _, list := range h {
			for tag := range strings.SplitSeq(list, ",") {
				tag = strings.TrimSpace(tag)
				if tag == "*" {
					p.any = true
					continue
				}
				// Weak tags never match in If-Match (strong comparison, RFC 9110 13.1.1).
				if s, ok := strings.CutPrefix(tag, `"v`); ok && strings.HasSuffix(s, `"`) {
					if v, err := strconv.ParseInt(strings.TrimSuffix(s, `"`), 10, 64); err == nil {
						p.versions = append(p.versions, v)
					}
				}
			}
		}
		return p, nil
	}
	if bodyVersion == nil {
		return Precondition{}, ErrPreconditionRequired
	}
	return Precondition{versions: []int64{*bodyVersion}}, nil
}

// Matches reports whether the current version satisfies p.
func (p Precondition) Matches(current int64) bool {
	if p.any {
		return true
	}
	for _, v := range p.versions {
		if v == current {
			return true
		}
	}
	return false
}

// Failed is the error of a write whose precondition did not match: 412 for If-Match, 409
// for a version in the body.
func (p Precondition) Failed() error {
	if p.fromHeader {
		return ErrPreconditionFailed
	}
	return ErrVersionConflict
}

// ParseOptionalPrecondition is ParsePrecondition for writes that may be sent blind
// (publish, delete): without If-Match or a version, any version matches.
func ParseOptionalPrecondition(r *http.Request, bodyVersion *int64) Precondition {
	p, err := ParsePrecondition(r, bodyVersion)
	if err != nil {
		return Precondition{any: true}
	}
	return p
}

// PathID reads the positive integer path value name (an id in the URL); anything else is
// ErrNotFound: a malformed id names no resource.
func PathID(r *http.Request, name string) (int64, error) {
	n, err := strconv.ParseInt(r.PathValue(name), 10, 64)
	if err != nil || n <= 0 {
		return 0, ErrNotFound
	}
	return n, nil
}
