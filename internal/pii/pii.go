// Package pii finds personal data and secrets in log text and replaces them, so that no
// personal data reaches a log line. The edge's log encoders and the app server's zap core
// share it, and its zap-field scrubbing (ZapField, ZapInt, JSONValue); it imports nothing
// from Caddy.
//
// A Scrubber is built once from a Config and is safe for concurrent use. Most log strings
// hold no personal data: for those, String returns its argument unchanged and allocates
// nothing, after one cheap pass that decides which detectors can have a candidate at all.
// Strings that needed a closer look are remembered with their result once seen twice, so
// that repeated values (user agents, common headers, a client's address) cost a hash.
//
// Detection decodes before it judges: percent escapes (once and twice: %2540) and JSON
// escapes (\u0040, \", \/) are decoded, the detectors run on the decoded text and their
// matches are mapped back, so that only the escaped value is replaced. Tokens that other
// values can be glued to (JWTs, AWS access key IDs, URL credentials, IBANs) are found first
// and set apart, so that "4111111111111111AKIA..." and "10.0.0.1eyJhbGci..." are two values
// each. Every detector takes time linear in the length of the text.
//
// What is detected (each detector is a Kind):
//
//   - email: local@domain.tld.
//   - phone: E.164 (+ and 8 to 15 digits, groups separated by spaces, dashes, dots or a
//     parenthesised group); North American (415) 555-2671, 415-555-2671, 415.555.2671,
//     415 555 2671, optionally with a leading 1; national numbers with a trunk 0 and 9 to 11
//     digits (020 7946 0958, 030-12345678, 01 23 45 67 89, 07911123456); and any 7 to 15
//     digits under a phone name (phone, mobile, msisdn, tel: X-MSISDN: 442079460865).
//   - card: 13 to 19 digits, plain or in groups of four (Amex 4-6-5, Diners 4-6-4) separated
//     by spaces or dashes, with a known network prefix and a valid Luhn check digit.
//   - ssn: US social security numbers written AAA-GG-SSSS or AAA GG SSSS (valid ranges only).
//   - iban: country code, check digits and account, plain or in groups of four, in upper or
//     lower case, mod-97 checked.
//   - ip: IPv4 and IPv6 addresses but loopback and unspecified ones (and product versions
//     such as Chrome/131.0.0.0); masked to /24 and /64 by default.
//   - jwt: three base64url segments whose first two start with "ey" (a JSON object).
//   - bearer: the token after "Bearer " (any case, also "Bearer:" and "bearer=") when it is
//     at least 8 characters and holds a digit or punctuation, or is at least 16 characters
//     of mixed case.
//   - aws_access_key_id: AKIA, ASIA, ABIA or ACCA followed by 16 upper-case letters or digits.
//   - aws_secret_key: exactly 40 base64 characters that look random (at least 3 upper-case
//     and 3 lower-case letters, and a digit, '+' or '/' or else at least 8 upper-case
//     letters), a whole run or a segment of a path between slashes.
//   - url_credentials: the userinfo of a URL (scheme://user:pass@host).
//   - param: the value of a sensitive parameter, by name: name=value, name: value and
//     "name": "value" (JSON, also inside a string); and a token (letters and digits mixed,
//     at least 16 characters after spaces, 8 after a separator) after a name that ends in
//     token, key, secret or password (api_key, X-Auth-Token, "token ya29.a0Af...").
//   - header: the value of a sensitive header (Authorization, Cookie, Set-Cookie, ...), by
//     field name, or written "Name: value" in text: a scheme and its credentials, or
//     cookies, and not the rest of the line.
//   - field: the whole value of a field that the configuration names as personal data.
//
// Timestamps (with fractions of seconds), UUIDs, request IDs, order numbers, durations,
// version strings, ports, ZIP+4 codes and numbers failing the Luhn check are left alone.
package pii

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/maphash"
	"net/netip"
	"strings"
	"sync"
)

// Kind is a kind of personal data or secret that the Scrubber detects.
type Kind uint8

// The kinds, in the order their detectors run.
const (
	KindEmail Kind = iota
	KindPhone
	KindCard
	KindSSN
	KindIBAN
	KindIP
	KindJWT
	KindBearer
	KindAWSKeyID
	KindAWSSecret
	KindURLCredentials
	KindParam
	KindHeader
	KindField
	numKinds
)

var kindNames = [numKinds]string{
	"email", "phone", "card", "ssn", "iban", "ip", "jwt", "bearer", "aws_access_key_id",
	"aws_secret_key", "url_credentials", "param", "header", "field",
}

// String returns the kind's name as used in Config.Modes, in redaction markers and as a
// metric label.
func (k Kind) String() string {
	if k < numKinds {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Kinds returns every kind, in detector order.
func Kinds() []Kind {
	ks := make([]Kind, numKinds)
	for i := range ks {
		ks[i] = Kind(i)
	}
	return ks
}

// mode says what the Scrubber writes in place of a detected value (see Config.Modes).
type mode uint8

const (
	modeRedact mode = iota
	modeMask
	modePseudonym
	modeOff
)

var modeNames = map[string]mode{"redact": modeRedact, "mask": modeMask, "pseudonym": modePseudonym, "off": modeOff}

// DefaultParams are the query and form parameters whose values are always redacted (names
// compare case-insensitively, '-' and '_' alike).
var DefaultParams = []string{
	"password", "passwd", "pwd", "pass", "secret", "client_secret", "token", "access_token",
	"refresh_token", "id_token", "api_key", "apikey", "code", "auth", "session", "session_id",
	"sessionid", "signature", "sig", "otp", "pin", "private_key", "x_amz_signature",
	"x_amz_credential", "x_amz_security_token", "aws_secret_access_key",
}

// DefaultHeaders are the fields (HTTP headers) whose values are always redacted whole.
var DefaultHeaders = []string{
	"authorization", "proxy_authorization", "cookie", "set_cookie", "x_api_key", "x_origin_verify",
	"x_auth_token", "x_csrf_token", "x_amz_security_token",
}

// Config configures a Scrubber. Its zero value gives the defaults.
type Config struct {
	// Modes sets the mode of a kind, by kind name (email, phone, card, ssn, iban, ip, jwt,
	// bearer, aws_access_key_id, aws_secret_key, url_credentials, param, header, field):
	//
	//   - redact writes [REDACTED:kind].
	//   - mask keeps a harmless part: a card, phone, SSN or IBAN keeps its last 4 digits
	//     (the others become '*', separators stay), an email keeps the first character of
	//     its local part and its domain, an IPv4 address keeps its /24 and an IPv6 address
	//     its /64. Kinds without a mask form (secrets, tokens, fields) are redacted.
	//   - pseudonym writes [kind:HEX], HEX being the first 16 hex digits of
	//     HMAC-SHA256(PseudonymKey, kind and value): the same value gives the same token on
	//     every line, and the token cannot be reversed without the key. Emails compare
	//     case-insensitively; cards, phones and SSNs by their digits.
	//   - off disables the detector.
	//
	// Default: ip is masked, every other kind redacted.
	Modes map[string]string `json:"modes,omitempty"`

	// PseudonymKey is the HMAC key of the pseudonym mode, at least 16 bytes. Required when a
	// kind uses the pseudonym mode. Default: none.
	PseudonymKey string `json:"pseudonym_key,omitempty"`

	// Params lists query and form parameter names whose values are redacted (kind param),
	// added to DefaultParams. Names compare case-insensitively, '-' and '_' alike.
	// Default: DefaultParams only.
	Params []string `json:"params,omitempty"`

	// Headers lists field names (HTTP headers) whose values are redacted whole (kind
	// header), added to DefaultHeaders. Default: DefaultHeaders only.
	Headers []string `json:"headers,omitempty"`

	// Fields lists field names whose values are personal data, redacted whole (kind
	// field), e.g. display_name. Default: none.
	Fields []string `json:"fields,omitempty"`

	// OnRedact, when set, is called once for each value replaced, with its kind and never
	// the value, so that callers can count redactions (a Prometheus counter by kind). It
	// must be safe for concurrent use.
	OnRedact func(Kind) `json:"-"`
}

// Scrubber replaces personal data in strings, fields and JSON documents. It is safe for
// concurrent use.
type Scrubber struct {
	modes    [numKinds]mode
	key      []byte
	hmacs    sync.Pool
	names    map[string]Kind     // normalised field or parameter name → header, field or param
	nameSigs [maxName + 1]uint64 // nameSigs[len(name)] has bit nameSig(name) of every name
	onRedact func(Kind)
	results  resultCache
}

// maxName is the longest field or parameter name looked up; longer names never match.
const maxName = 64

// New builds a Scrubber from cfg.
func New(cfg Config) (*Scrubber, error) {
	s := &Scrubber{names: make(map[string]Kind), onRedact: cfg.OnRedact}
	s.results.seed = maphash.MakeSeed()
	s.modes[KindIP] = modeMask
	pseudo := false
	for name, m := range cfg.Modes {
		k, ok := kindByName(name)
		if !ok {
			return nil, fmt.Errorf("pii: unknown kind %q", name)
		}
		md, ok := modeNames[m]
		if !ok {
			return nil, fmt.Errorf("pii: unknown mode %q for %s", m, name)
		}
		s.modes[k] = md
		pseudo = pseudo || md == modePseudonym
	}
	if pseudo {
		if len(cfg.PseudonymKey) < 16 {
			return nil, errors.New("pii: pseudonym mode needs a pseudonym_key of at least 16 bytes")
		}
		s.key = []byte(cfg.PseudonymKey)
		s.hmacs.New = func() any { return hmac.New(sha256.New, s.key) }
	}
	for _, l := range []struct {
		kind  Kind
		names []string
	}{
		{KindParam, DefaultParams}, {KindParam, cfg.Params},
		{KindField, cfg.Fields},
		{KindHeader, DefaultHeaders}, {KindHeader, cfg.Headers},
	} {
		for _, n := range l.names {
			var buf [maxName]byte
			key, ok := normalizeName(&buf, n)
			if !ok {
				return nil, fmt.Errorf("pii: name %q is empty or longer than %d bytes", n, maxName)
			}
			s.names[string(key)] = l.kind
			s.nameSigs[len(key)] |= 1 << nameSig(key)
		}
	}
	return s, nil
}

func kindByName(name string) (Kind, bool) {
	for i, n := range kindNames {
		if n == name {
			return Kind(i), true
		}
	}
	return 0, false
}

// normalizeName lower-cases name and maps '-' to '_' into buf; false if name does not fit
// or is empty.
func normalizeName(buf *[maxName]byte, name string) ([]byte, bool) {
	if name == "" || len(name) > maxName {
		return nil, false
	}
	for i := 0; i < len(name); i++ {
		buf[i] = lower(name[i])
	}
	return buf[:len(name)], true
}

// lower lower-cases c and maps '-' to '_'.
func lower(c byte) byte {
	switch {
	case 'A' <= c && c <= 'Z':
		return c + 'a' - 'A'
	case c == '-':
		return '_'
	}
	return c
}

// nameSig is a 6-bit signature of a normalised name (its first and last bytes), to rule
// out most names without a map lookup.
func nameSig(key []byte) uint { return uint(key[0]*31+key[len(key)-1]) & 63 }

// FieldKind reports whether Field replaces the values of the named field (or parameter)
// whole, and under which kind: header, field or param.
func (s *Scrubber) FieldKind(name string) (Kind, bool) {
	if name == "" || len(name) > maxName ||
		s.nameSigs[len(name)]&(1<<nameSig([]byte{lower(name[0]), lower(name[len(name)-1])})) == 0 {
		return 0, false
	}
	var buf [maxName]byte
	key, ok := normalizeName(&buf, name)
	if !ok {
		return 0, false
	}
	k, ok := s.names[string(key)]
	if !ok || s.modes[k] == modeOff {
		return 0, false
	}
	return k, true
}

// String returns s with every piece of personal data replaced. When there is none it
// returns s itself without allocating.
func (s *Scrubber) String(str string) string {
	out, _ := s.scrub(str)
	return out
}

// Field scrubs the value of a field (a log field, a JSON key, an HTTP header): a value whose
// name is a sensitive header, a configured PII field or a sensitive parameter is replaced
// whole, and so is a phone number under a phone name (X-MSISDN: 442079460865) and a token
// under a name ending in token, key, secret or password (X-Access-Token); any other value
// goes through String.
func (s *Scrubber) Field(name, value string) string {
	if k, ok := s.FieldKind(name); ok {
		return s.whole(k, value)
	}
	// Shorter values are no phone number and no token; see valueKind.
	if len(value) >= 7 && (isDigit(value[0]) || value[0] == '+' || value[0] == '(' || keywordEnd(name)) {
		if k, ok := s.valueKind(name, value); ok {
			return s.whole(k, value)
		}
	}
	return s.String(value)
}

// valueKind reports whether Field replaces value, the value of the named field, whole by
// the name and the value's shape, and as which kind: a phone number under a phone name
// (phone, mobile, msisdn, tel, ...) when phoneShaped, there a bare number such as
// 442079460865 is one; a parameter under a keyword name (X-Access-Token) when tokenLike.
func (s *Scrubber) valueKind(name, value string) (Kind, bool) {
	if c := value[0]; (isDigit(c) || c == '+' || c == '(') && s.on(KindPhone) && phoneShaped(value) && phoneName(name) {
		return KindPhone, true
	}
	if s.on(KindParam) && keyword(name) && tokenLike(value, 8) {
		return KindParam, true
	}
	return 0, false
}

// whole replaces all of value as kind k; empty values stay empty.
func (s *Scrubber) whole(k Kind, value string) string {
	if value == "" {
		return value
	}
	var b strings.Builder
	s.replace(&b, k, value, false)
	return b.String()
}

// scrub returns str with its matches replaced, and whether anything was. Strings that
// need a close look go through the result cache.
func (s *Scrubber) scrub(str string) (string, bool) {
	acc := triggers(str)
	cached := cacheable(acc, len(str))
	var h uint64
	if cached {
		h = s.results.hash(str)
		if r := s.results.get(str, h); r != nil {
			if len(r.kinds) == 0 {
				return str, false
			}
			if s.onRedact != nil {
				for _, k := range r.kinds {
					s.onRedact(k)
				}
			}
			return r.out, true
		}
	}
	f := prefilter(str, acc)
	var ms []match
	if f != 0 || acc&tEsc != 0 {
		var buf [8]match
		ms = s.matches(str, acc, f, buf[:0])
	}
	if len(ms) == 0 {
		if cached {
			s.results.add(str, h, "", nil)
		}
		return str, false
	}
	var b strings.Builder
	b.Grow(len(str) + 16*len(ms))
	last := 0
	for _, m := range ms {
		b.WriteString(str[last:m.start])
		s.replace(&b, m.kind, str[m.start:m.end], m.force)
		last = m.end
	}
	b.WriteString(str[last:])
	out := b.String()
	if cached {
		s.results.add(str, h, out, ms)
	}
	return out, true
}

// matches returns the merged matches in str, of triggers acc and features f (prefilter),
// appended to ms. A string with escapes is judged decoded, its matches mapped back to the
// escaped text.
func (s *Scrubber) matches(str string, acc uint8, f uint16, ms []match) []match {
	switch {
	case acc&tEsc != 0 && hasEscape(str):
		d := decodedPool.Get().(*decoded)
		text := d.decode(str)
		if f := prefilter(text, triggers(text)); f != 0 {
			ms = s.detect(text, f, ms)
		}
		for i := range ms {
			ms[i].start, ms[i].end = int(d.pos[ms[i].start]), int(d.pos[ms[i].end])
		}
		d.release()
	case f != 0:
		ms = s.detect(str, f, ms)
	}
	if len(ms) == 0 {
		return ms
	}
	return merge(ms)
}

// replace writes the replacement of v, a value of kind k, to b and counts it; force
// redacts whatever the mode.
func (s *Scrubber) replace(b *strings.Builder, k Kind, v string, force bool) {
	if s.onRedact != nil {
		s.onRedact(k)
	}
	switch md := s.modes[k]; {
	case force || md == modeRedact:
	case md == modePseudonym:
		s.pseudonym(b, k, unescape(v))
		return
	case md == modeMask && mask(b, k, unescape(v)):
		return
	}
	b.WriteString("[REDACTED:")
	b.WriteString(k.String())
	b.WriteByte(']')
}

// pseudonym writes [kind:HEX] for v.
func (s *Scrubber) pseudonym(b *strings.Builder, k Kind, v string) {
	h := s.hmacs.Get().(hash.Hash)
	h.Reset()
	h.Write([]byte{byte(k)})
	switch k {
	case KindEmail:
		h.Write([]byte(strings.ToLower(v)))
	case KindCard, KindPhone, KindSSN:
		var d [1]byte
		for i := 0; i < len(v); i++ {
			if isDigit(v[i]) {
				d[0] = v[i]
				h.Write(d[:])
			}
		}
	default:
		h.Write([]byte(v))
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	s.hmacs.Put(h)
	var hx [16]byte
	hex.Encode(hx[:], sum[:8])
	b.WriteByte('[')
	b.WriteString(k.String())
	b.WriteByte(':')
	b.Write(hx[:])
	b.WriteByte(']')
}

// mask writes the masked form of v to b; false when kind k has none.
func mask(b *strings.Builder, k Kind, v string) bool {
	switch k {
	case KindCard, KindPhone, KindSSN, KindIBAN:
		kept := 0
		out := make([]byte, len(v))
		for i := len(v) - 1; i >= 0; i-- {
			c := v[i]
			if isAlnum(c) {
				if kept < 4 {
					kept++
				} else {
					c = '*'
				}
			}
			out[i] = c
		}
		b.Write(out)
		return true
	case KindEmail:
		at := strings.IndexByte(v, '@')
		if at < 1 {
			return false
		}
		b.WriteByte(v[0])
		b.WriteString("***")
		b.WriteString(v[at:])
		return true
	case KindIP:
		a, err := netip.ParseAddr(v)
		if err != nil {
			return false
		}
		bits := 24
		if a.Is6() {
			bits = 64
		}
		p, err := a.Prefix(bits)
		if err != nil {
			return false
		}
		b.WriteString(p.Addr().String())
		return true
	}
	return false
}
