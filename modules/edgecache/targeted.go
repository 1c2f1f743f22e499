package edgecache

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// defaultTargeted are the targeted cache-control fields (RFC 9213) this cache obeys when
// none are configured.
var defaultTargeted = []string{"CDN-Cache-Control"}

// responseDirectives returns the cache directives of a response for this cache: those of
// the first of the targeted fields (RFC 9213 §2.1, in targeted order) that is present with
// a valid, non-empty Structured Field Dictionary value, else those of Cache-Control. used
// reports whether a targeted field was used: then Cache-Control and Expires are ignored.
// With no targeted names given, defaultTargeted applies.
func responseDirectives(h http.Header, targeted []string) (d directives, used bool) {
	if len(targeted) == 0 {
		targeted = defaultTargeted
	}
	for _, name := range targeted {
		lines := h.Values(name)
		if len(lines) == 0 {
			continue
		}
		if d, ok := parseTargeted(strings.Join(lines, ",")); ok {
			return d, true
		}
	}
	return parseDirectives(h), false
}

// parseTargeted parses a targeted field's value, an RFC 8941 Dictionary whose members are
// cache directives. ok is false when the value is empty or not a valid Dictionary (RFC
// 9213 §2.1: the field is then ignored). Duration directives take a non-negative Integer;
// another value reads as 0 (stale), as in Cache-Control. A Boolean false member is absent.
func parseTargeted(s string) (d directives, ok bool) {
	d = noDirectives
	members, ok := parseSFDictionary(s)
	if !ok || len(members) == 0 {
		return d, false
	}
	seconds := func(dst *time.Duration, v sfValue) {
		*dst = 0
		if v.kind == sfInteger && v.n >= 0 {
			*dst = min(time.Duration(v.n)*time.Second, maxDelta)
		}
	}
	for _, m := range members {
		if m.value.kind == sfBoolean && m.value.n == 0 {
			continue
		}
		if !d.setFlag(m.key, m.value.kind != sfBoolean) {
			if dst := d.duration(m.key); dst != nil {
				seconds(dst, m.value)
			}
		}
	}
	return d, true
}

// sfValue is a Structured Field member's value, enough of it for cache directives: its
// kind, and the number for Integers and Booleans (1 true, 0 false).
type sfValue struct {
	kind int
	n    int64
}

const (
	sfBoolean = iota
	sfInteger
	sfOther // Decimal, String, Token, Byte Sequence, Inner List
)

type sfMember struct {
	key   string
	value sfValue
}

// parseSFDictionary parses s as an RFC 8941 §4.2.2 Dictionary. Parameters are validated
// and dropped. A key given twice keeps its last value (§4.2.2: later members overwrite).
func parseSFDictionary(s string) ([]sfMember, bool) {
	p := sfParser{s: strings.Trim(s, " ")}
	var out []sfMember
	for p.s != "" {
		key, ok := p.key()
		if !ok {
			return nil, false
		}
		v := sfValue{kind: sfBoolean, n: 1}
		if p.peek() == '=' {
			p.s = p.s[1:]
			if p.peek() == '(' {
				if !p.innerList() {
					return nil, false
				}
				v = sfValue{kind: sfOther}
			} else if v, ok = p.bareItem(); !ok {
				return nil, false
			}
		}
		if !p.params() {
			return nil, false
		}
		replaced := false
		for i := range out {
			if out[i].key == key {
				out[i].value, replaced = v, true
			}
		}
		if !replaced {
			out = append(out, sfMember{key, v})
		}
		p.s = strings.TrimLeft(p.s, " \t")
		if p.s == "" {
			break
		}
		if p.s[0] != ',' {
			return nil, false
		}
		p.s = strings.TrimLeft(p.s[1:], " \t")
		if p.s == "" {
			return nil, false // trailing comma
		}
	}
	return out, true
}

type sfParser struct{ s string }

func (p *sfParser) peek() byte {
	if p.s == "" {
		return 0
	}
	return p.s[0]
}

// key parses a key: ( lcalpha / "*" ) *( lcalpha / DIGIT / "_" / "-" / "." / "*" ).
func (p *sfParser) key() (string, bool) {
	c := p.peek()
	if !(c >= 'a' && c <= 'z' || c == '*') {
		return "", false
	}
	i := 1
	for ; i < len(p.s); i++ {
		c := p.s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' || c == '*') {
			break
		}
	}
	k := p.s[:i]
	p.s = p.s[i:]
	return k, true
}

// bareItem parses an Integer, Decimal, String, Token, Byte Sequence or Boolean.
func (p *sfParser) bareItem() (sfValue, bool) {
	c := p.peek()
	switch {
	case c == '-' || c >= '0' && c <= '9':
		return p.number()
	case c == '"':
		for i := 1; i < len(p.s); i++ {
			switch c := p.s[i]; {
			case c == '\\':
				if i+1 >= len(p.s) || (p.s[i+1] != '"' && p.s[i+1] != '\\') {
					return sfValue{}, false
				}
				i++
			case c == '"':
				p.s = p.s[i+1:]
				return sfValue{kind: sfOther}, true
			case c < 0x20 || c > 0x7e:
				return sfValue{}, false
			}
		}
		return sfValue{}, false
	case c == '*' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
		i := 1
		for ; i < len(p.s) && (isTChar(p.s[i]) || p.s[i] == ':' || p.s[i] == '/'); i++ {
		}
		p.s = p.s[i:]
		return sfValue{kind: sfOther}, true
	case c == ':':
		end := strings.IndexByte(p.s[1:], ':')
		if end < 0 {
			return sfValue{}, false
		}
		for _, b := range []byte(p.s[1 : 1+end]) {
			if !(b >= 'A' && b <= 'Z' || b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b == '+' || b == '/' || b == '=') {
				return sfValue{}, false
			}
		}
		p.s = p.s[end+2:]
		return sfValue{kind: sfOther}, true
	case c == '?':
		if len(p.s) < 2 || (p.s[1] != '0' && p.s[1] != '1') {
			return sfValue{}, false
		}
		v := sfValue{kind: sfBoolean, n: int64(p.s[1] - '0')}
		p.s = p.s[2:]
		return v, true
	}
	return sfValue{}, false
}

// number parses an Integer (up to 15 digits) or a Decimal (up to 12.3 digits).
func (p *sfParser) number() (sfValue, bool) {
	i := 0
	if p.peek() == '-' {
		i++
	}
	start, dot := i, -1
	for ; i < len(p.s); i++ {
		c := p.s[i]
		if c == '.' && dot < 0 {
			dot = i
			continue
		}
		if c < '0' || c > '9' {
			break
		}
	}
	digits := p.s[start:i]
	switch {
	case digits == "" || digits[0] == '.':
		return sfValue{}, false
	case dot < 0:
		if len(digits) > 15 {
			return sfValue{}, false
		}
		n, err := strconv.ParseInt(p.s[:i], 10, 64)
		if err != nil {
			return sfValue{}, false
		}
		p.s = p.s[i:]
		return sfValue{kind: sfInteger, n: n}, true
	case dot-start > 12 || i-dot-1 < 1 || i-dot-1 > 3:
		return sfValue{}, false
	}
	p.s = p.s[i:]
	return sfValue{kind: sfOther}, true
}

// innerList parses "(" *SP [ item *( 1*SP item ) *SP ] ")" parameters are read by the caller.
func (p *sfParser) innerList() bool {
	p.s = p.s[1:]
	for {
		p.s = strings.TrimLeft(p.s, " ")
		if p.peek() == ')' {
			p.s = p.s[1:]
			return true
		}
		if _, ok := p.bareItem(); !ok || !p.params() {
			return false
		}
		if c := p.peek(); c != ' ' && c != ')' {
			return false
		}
	}
}

// params parses *( ";" *SP key [ "=" bare-item ] ).
func (p *sfParser) params() bool {
	for p.peek() == ';' {
		p.s = strings.TrimLeft(p.s[1:], " ")
		if _, ok := p.key(); !ok {
			return false
		}
		if p.peek() == '=' {
			p.s = p.s[1:]
			if _, ok := p.bareItem(); !ok {
				return false
			}
		}
	}
	return true
}

// isTChar reports whether c is an RFC 9110 tchar.
func isTChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
