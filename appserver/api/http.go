package api

import (
	"net/http"
	"strconv"
	"strings"
)

// ETag is the entity tag of version v of a resource, the validator of the author's
// (private) views that If-Match sends back. Public answers carry ContentETag instead.
func ETag(v int64) string { return `"v` + strconv.FormatInt(v, 10) + `"` }

// entityTag is one member of an If-Match or If-None-Match list (RFC 9110 8.8.3).
type entityTag struct {
	weak   bool
	opaque string // with its quotes
}

// parseETags reads the entity-tags listed in the field values vs (If-Match, If-None-Match):
// star when one member is "*". Members that are not entity-tags are skipped; a quoted tag
// may hold commas.
func parseETags(vs []string) (tags []entityTag, star bool) {
	for _, v := range vs {
		for v != "" {
			v = strings.TrimLeft(v, " \t,")
			var t entityTag
			rest := v
			if s, ok := strings.CutPrefix(rest, "W/"); ok {
				t.weak, rest = true, s
			}
			switch {
			case v == "":
			case v[0] == '*':
				star, v = true, v[1:]
			case strings.HasPrefix(rest, `"`):
				end := strings.IndexByte(rest[1:], '"')
				if end < 0 {
					v = "" // unterminated: nothing more to read in this value
					break
				}
				t.opaque, v = rest[:end+2], rest[end+2:]
				tags = append(tags, t)
			default: // not an entity-tag: skip the member
				if i := strings.IndexByte(v, ','); i >= 0 {
					v = v[i:]
				} else {
					v = ""
				}
			}
		}
	}
	return tags, star
}

// Precondition is the version of a resource a write was based on, as ParsePrecondition
// reads it. The zero value matches no version.
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
		var tags []entityTag
		tags, p.any = parseETags(h)
		for _, t := range tags {
			// Weak tags never match in If-Match (strong comparison, RFC 9110 13.1.1).
			if s, ok := strings.CutPrefix(t.opaque, `"v`); ok && !t.weak {
				if v, err := strconv.ParseInt(strings.TrimSuffix(s, `"`), 10, 64); err == nil {
					p.versions = append(p.versions, v)
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
