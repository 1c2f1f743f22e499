package edgecache

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strings"
)

// The parts a primary cache key can be made of.
const (
	partMethod = "method"
	partScheme = "scheme"
	partHost   = "host"
	partPath   = "path"
	partQuery  = "query"
)

var defaultKeyParts = []string{partMethod, partHost, partPath, partQuery}

// The ways a key can take the query.
const (
	querySort   = "sort"   // parameters sorted by name (stable for equal names): ?b=1&a=2 and ?a=2&b=1 share an entry
	queryKeep   = "keep"   // the query as the client sent it
	queryIgnore = "ignore" // no query: every query of a path shares the entry
)

// keyer builds primary keys from requests.
type keyer struct {
	parts  []string
	query  string
	ignore map[string]bool // query parameters left out of keys
}

func newKeyer(parts []string, query string, ignoreParams []string) (*keyer, error) {
	if len(parts) == 0 {
		parts = defaultKeyParts
	}
	for _, p := range parts {
		switch p {
		case partMethod, partScheme, partHost, partPath, partQuery:
		default:
			return nil, fmt.Errorf("unknown key part %q (want method, scheme, host, path or query)", p)
		}
	}
	switch query {
	case "":
		query = querySort
	case querySort, queryKeep, queryIgnore:
	default:
		return nil, fmt.Errorf("unknown query mode %q (want sort, keep or ignore)", query)
	}
	k := &keyer{parts: parts, query: query}
	if len(ignoreParams) > 0 {
		k.ignore = make(map[string]bool, len(ignoreParams))
		for _, p := range ignoreParams {
			k.ignore[p] = true
		}
	}
	return k, nil
}

// key returns the primary key of a GET or HEAD request (both share entries: the method part
// is always GET).
func (k *keyer) key(r *http.Request) string {
	var b strings.Builder
	b.Grow(len(r.Host) + len(r.URL.Path) + len(r.URL.RawQuery) + 8)
	for i, p := range k.parts {
		if i > 0 {
			b.WriteByte(' ')
		}
		switch p {
		case partMethod:
			b.WriteString(http.MethodGet)
		case partScheme:
			if r.TLS != nil {
				b.WriteString("https")
			} else {
				b.WriteString("http")
			}
		case partHost:
			b.WriteString(strings.ToLower(r.Host))
		case partPath:
			b.WriteString(normalizePercent(r.URL.EscapedPath()))
		case partQuery:
			b.WriteByte('?')
			b.WriteString(k.normalizeQuery(normalizePercent(r.URL.RawQuery)))
		}
	}
	return b.String()
}

// keyOfURL returns the primary key of a GET of rawURL, for purges and invalidations.
func (k *keyer) keyOfURL(rawURL, defaultHost string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", err
	}
	r := &http.Request{Method: http.MethodGet, URL: u, Host: u.Host}
	if r.Host == "" {
		r.Host = defaultHost
	}
	if u.Scheme == "https" {
		r.TLS = tlsMarker
	}
	return k.key(r), nil
}

// normalizePercent normalizes the percent-encoding of a URL's path or query as RFC 3986
// §6.2.2 allows without changing what it means: triplets of unreserved characters (ALPHA,
// DIGIT, '-', '.', '_', '~') are decoded ("%41" → "A", "%7e" → "~") and the hex digits of
// the others are upper-cased ("%2f" → "%2F"; it stays encoded, as do all reserved and
// other characters). s with a '%' not followed by two hex digits is malformed and returned
// as it is (decoding next to a stray '%' could make a new triplet: "%%410" is not "%A0"), as
// is s without '%', without allocating.
func normalizePercent(s string) string {
	i := strings.IndexByte(s, '%')
	if i < 0 {
		return s
	}
	b := make([]byte, 0, len(s))
	b = append(b, s[:i]...)
	for ; i < len(s); i++ {
		c := s[i]
		if c != '%' {
			b = append(b, c)
			continue
		}
		if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
			return s
		}
		d := unhex(s[i+1])<<4 | unhex(s[i+2])
		if isUnreserved(d) {
			b = append(b, d)
		} else {
			b = append(b, '%', upperHex[d>>4], upperHex[d&15])
		}
		i += 2
	}
	return string(b)
}

const upperHex = "0123456789ABCDEF"

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

// isUnreserved reports whether c is an unreserved character of RFC 3986 §2.3.
func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

// tlsMarker marks a request made of an https URL as one that came over TLS.
var tlsMarker = &tls.ConnectionState{}

func (k *keyer) normalizeQuery(raw string) string {
	if raw == "" || k.query == queryIgnore {
		return ""
	}
	if k.query == queryKeep && k.ignore == nil {
		return raw
	}
	params := strings.Split(raw, "&")
	if k.ignore != nil {
		params = slices.DeleteFunc(params, func(p string) bool {
			name, _, _ := strings.Cut(p, "=")
			if n, err := url.QueryUnescape(name); err == nil {
				name = n
			}
			return name == "" || k.ignore[name]
		})
	}
	if k.query == querySort {
		slices.SortStableFunc(params, func(a, b string) int {
			an, _, _ := strings.Cut(a, "=")
			bn, _, _ := strings.Cut(b, "=")
			return strings.Compare(an, bn)
		})
	}
	return strings.Join(params, "&")
}

// varyNames returns the canonical header names a response's Vary lists, and whether it
// lists "*" (never matches: such a response is not stored).
func varyNames(h http.Header) (names []string, star bool) {
	for _, line := range h.Values("Vary") {
		for f := range strings.SplitSeq(line, ",") {
			f = strings.TrimSpace(f)
			switch f {
			case "":
			case "*":
				return nil, true
			default:
				names = append(names, textproto.CanonicalMIMEHeaderKey(f))
			}
		}
	}
	slices.Sort(names)
	return slices.Compact(names), false
}

// secondaryKey returns the request's values of the Vary'd header names (RFC 9111 §4.1),
// normalized: whitespace around commas dropped, Accept-Encoding reduced to the codings the
// edge and its upstreams produce, so that one resource has at most a handful of variants.
func secondaryKey(names []string, h http.Header) string {
	if len(names) == 0 {
		return ""
	}
	var b strings.Builder
	for _, n := range names {
		b.WriteString(n)
		b.WriteByte('=')
		if n == "Accept-Encoding" {
			b.WriteString(normalizeAcceptEncoding(h.Values(n)))
		} else {
			for i, v := range h.Values(n) {
				if i > 0 {
					b.WriteByte(',')
				}
				b.WriteString(normalizeList(v))
			}
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// normalizeList removes the optional whitespace around the commas of a list field value.
func normalizeList(v string) string {
	if !strings.ContainsAny(v, " \t") {
		return v
	}
	parts := strings.Split(v, ",")
	for i, p := range parts {
		parts[i] = strings.TrimSpace(p)
	}
	return strings.Join(parts, ",")
}

// codings are the content codings that distinguish variants, in key order.
var codings = [...]string{"br", "gzip", "zstd"}

// normalizeAcceptEncoding reduces Accept-Encoding to the acceptable codings among br, gzip
// and zstd, sorted ("" for identity only): "gzip, deflate, br;q=0.8" → "br,gzip".
func normalizeAcceptEncoding(values []string) string {
	var accepted [len(codings)]bool
	for _, line := range values {
		for item := range strings.SplitSeq(line, ",") {
			name, params, _ := strings.Cut(item, ";")
			name = strings.ToLower(strings.TrimSpace(name))
			if q, ok := strings.CutPrefix(strings.ReplaceAll(strings.TrimSpace(params), " ", ""), "q="); ok && strings.Trim(q, "0.") == "" {
				continue // q=0: not acceptable
			}
			for i, c := range codings {
				if name == c || name == "*" || (c == "gzip" && name == "x-gzip") {
					accepted[i] = true
				}
			}
		}
	}
	var b strings.Builder
	for i, c := range codings {
		if accepted[i] {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(c)
		}
	}
	return b.String()
}
