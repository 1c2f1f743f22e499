package ratelimit

import (
	"fmt"
	"slices"
	"strings"
)

// keyPrefixes are the placeholder namespaces a key template may use: the verified identity
// ({http.auth.user.id}), request variables ({http.vars.client_ip}, which honours the
// server's trusted_proxies; {http.rate_limit.client_prefix} groups it by network) and the
// request itself ({http.request.host}, ...). Anything else
// is almost certainly a typo that would put every client in one bucket.
var keyPrefixes = []string{"http.auth.", "http.vars.", "http.request.", "http.regexp."}

// keyNames are the placeholders outside keyPrefixes a key template may use: the client's
// address prefix, which the handler computes.
var keyNames = []string{clientPrefixPlaceholder}

// template is a parsed key template: literal text and placeholder names, alternating.
type template struct {
	parts []part
}

type part struct {
	text        string
	placeholder bool
}

// parseTemplate parses a key template such as "{http.auth.user.id}" or "global", refusing
// unbalanced braces and placeholders outside keyPrefixes.
func parseTemplate(s string) (template, error) {
	if s == "" {
		return template{}, fmt.Errorf("key must not be empty")
	}
	var t template
	for s != "" {
		open := strings.IndexByte(s, '{')
		if end := strings.IndexByte(s, '}'); end >= 0 && (open < 0 || end < open) {
			return template{}, fmt.Errorf("key: unbalanced '}'")
		}
		if open < 0 {
			t.parts = append(t.parts, part{text: s})
			break
		}
		if open > 0 {
			t.parts = append(t.parts, part{text: s[:open]})
		}
		end := strings.IndexByte(s[open:], '}')
		if end < 0 {
			return template{}, fmt.Errorf("key: unclosed placeholder in %q", s)
		}
		name := s[open+1 : open+end]
		known := slices.Contains(keyNames, name)
		for _, p := range keyPrefixes {
			known = known || strings.HasPrefix(name, p) && len(name) > len(p)
		}
		if !known {
			return template{}, fmt.Errorf("key: unknown placeholder {%s} (want {%s} or one under {%s...})",
				name, strings.Join(keyNames, "}, {"), strings.Join(keyPrefixes, "...}, {"))
		}
		t.parts = append(t.parts, part{text: name, placeholder: true})
		s = s[open+end+1:]
	}
	return t, nil
}

// render returns the key of a request, looking placeholders up with get; ok is false when
// any placeholder is unset or empty, in which case the zone does not apply to the request
// (an anonymous request has no user key, rather than one shared empty key).
func (t template) render(get func(string) (string, bool)) (string, bool) {
	if len(t.parts) == 1 {
		p := t.parts[0]
		if !p.placeholder {
			return p.text, true
		}
		v, ok := get(p.text)
		return v, ok && v != ""
	}
	var b strings.Builder
	for _, p := range t.parts {
		if !p.placeholder {
			b.WriteString(p.text)
			continue
		}
		v, ok := get(p.text)
		if !ok || v == "" {
			return "", false
		}
		b.WriteString(v)
	}
	return b.String(), true
}
