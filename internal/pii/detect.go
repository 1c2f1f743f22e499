package pii

import (
	"net/netip"
	"slices"
	"strings"
	"sync"
)

// match is a detected value: str[start:end] of the given kind. force redacts it whatever
// the kind's mode (set when overlapping matches were merged).
type match struct {
	start, end int
	kind       Kind
	force      bool
	weak       bool // found by its name alone (a keyword): another kind on its span wins
}

// Byte classes.
const (
	cDigit = 1 << iota
	cUpper
	cLower
	cUnder // _
	cB64   // the other base64 characters: + /
	cURL   // - (base64url)
	cLocal // . % + - : more characters of an email's local part
	cHex   // 0-9 a-f A-F
)

// Triggers of a byte (trig): prefilter ORs those of a string together first, and looks
// closer only at strings with digits or long enough for a key or a secret.
const (
	tDigit  = 1 << iota
	tAt     // @
	tEq     // =
	tColon  // :
	tEsc    // % or \, of an escape (decode.go)
	tB      // b or B, of "bearer"
	tNotB64 // any byte but letters, digits, + and /
	tNotAln // any byte but letters and digits: it ends a word
)

// Features of a string, found by prefilter: each lets some detectors run.
const (
	fAt      = 1 << iota // an @
	fEq                  // an =
	fColon               // a :
	fColons              // two colons or more
	fJWT                 // a word starting "eyJ", or glued
	fBearer              // the word "bearer", any case
	fWords               // a word "A..A" (AWS key ID), letter, letter, digit, digit (IBAN) or glued
	fKeyword             // a word ending in token, key, secret or password (keyword)
	fSecret              // a run of 40 base64 characters or more
	fNumber              // a run of digits that numbers can accept (numberCandidate)

	// allFeatures lets every detector run.
	allFeatures = 1<<iota - 1
)

var class, trig [256]uint8

// ibanCountry[a*26+b] is true for the country codes that use IBANs.
var ibanCountry [26 * 26]bool

func init() {
	for c := 0; c < 256; c++ {
		switch {
		case '0' <= c && c <= '9':
			class[c] = cDigit | cHex
			trig[c] = tDigit
		case 'A' <= c && c <= 'Z':
			class[c] = cUpper
		case 'a' <= c && c <= 'z':
			class[c] = cLower
		}
		if ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F') {
			class[c] |= cHex
		}
	}
	class['_'] = cUnder
	class['+'] = cB64 | cLocal
	class['/'] = cB64
	class['-'] = cURL | cLocal
	class['.'] = cLocal
	class['%'] = cLocal
	for c := range trig {
		if !isAlnum(byte(c)) {
			trig[c] = tNotAln
			if c != '+' && c != '/' {
				trig[c] |= tNotB64
			}
		}
	}
	for c := range numClass {
		switch {
		case isDigit(byte(c)):
			numClass[c] = nDigit
		case c == '+' || c == '(':
			numClass[c] = nPlus
		case c != ' ' && c != '-' && c != '.' && c != ')':
			numClass[c] = nOther
		}
	}
	trig['@'] |= tAt
	trig['='] |= tEq
	trig[':'] |= tColon
	trig['%'] |= tEsc
	trig['\\'] |= tEsc
	trig['b'] |= tB
	trig['B'] |= tB
	for _, cc := range strings.Fields(`AD AE AL AT AZ BA BE BG BH BI BR BY CH CR CY CZ DE DJ DK DO
		EE EG ES FI FK FO FR GB GE GI GL GR GT HR HU IE IL IQ IS IT JO KW KZ LB LC LI LT LU LV LY
		MC MD ME MK MN MR MT MU NI NL NO OM PK PL PS PT QA RO RS RU SA SC SD SE SI SK SM SO ST SV
		TL TN TR UA VA VG XK`) {
		ibanCountry[int(cc[0]-'A')*26+int(cc[1]-'A')] = true
	}
}

func isDigit(c byte) bool { return class[c]&cDigit != 0 }
func isUpper(c byte) bool { return class[c]&cUpper != 0 }
func isAlnum(c byte) bool { return class[c]&(cDigit|cUpper|cLower) != 0 }
func isWord(c byte) bool  { return class[c]&(cDigit|cUpper|cLower|cUnder) != 0 }
func isB64(c byte) bool   { return class[c]&(cDigit|cUpper|cLower|cB64) != 0 }
func isB64URL(c byte) bool {
	return class[c]&(cDigit|cUpper|cLower|cUnder|cURL) != 0
}
func isLocal(c byte) bool { return class[c]&(cDigit|cUpper|cLower|cUnder|cLocal) != 0 }
func isHost(c byte) bool  { return isAlnum(c) || c == '.' || c == '-' }
func isIP6(c byte) bool   { return class[c]&cHex != 0 || c == ':' || c == '.' }

// isUserinfo: the characters of a URL's userinfo (RFC 3986).
func isUserinfo(c byte) bool {
	switch c {
	case '-', '.', '_', '~', '%', '!', '$', '&', '\'', '(', ')', '*', '+', ',', ';', '=', ':':
		return true
	}
	return isAlnum(c)
}

// isToken: the characters of a bearer token (RFC 6750 b64token).
func isToken(c byte) bool {
	switch c {
	case '.', '~', '+', '/', '=':
		return true
	}
	return isB64URL(c)
}

// endsValue: the characters that end a parameter's value.
func endsValue(c byte) bool {
	switch c {
	case '&', ' ', '\t', '\r', '\n', '"', '\'', ';', ',', '#', '<', '>':
		return true
	}
	return false
}

func (s *Scrubber) on(k Kind) bool { return s.modes[k] != modeOff }

// prefilter finds which detectors can have a candidate in str, of triggers acc, and
// returns those features. Strings with digits or of 20 bytes or more (an AWS key, a JWT)
// get a second look at their words (wordScan).
func prefilter(str string, acc uint8) uint16 {
	var f uint16
	if acc&tAt != 0 {
		f |= fAt
	}
	if acc&tEq != 0 {
		f |= fEq
	}
	if acc&tColon != 0 {
		f |= fColon
		if strings.Count(str, ":") >= 2 {
			f |= fColons
		}
	}
	if !wordScanned(acc, len(str)) {
		if acc&tB != 0 && len(str) >= len("bearer a.bcdefg") {
			f |= fBearer
		}
		return f
	}
	return f | wordScan(str)
}

// wordScanned reports whether prefilter looks at the words of a string of n bytes with
// triggers acc.
func wordScanned(acc uint8, n int) bool { return acc&tDigit != 0 || n >= 20 }

// triggers returns the triggers of the bytes of str ORed together.
func triggers(str string) uint8 {
	var a, b uint8
	i := 0
	for ; i+4 <= len(str); i += 4 {
		w := str[i : i+4]
		a |= trig[w[0]] | trig[w[1]]
		b |= trig[w[2]] | trig[w[3]]
	}
	for ; i < len(str); i++ {
		a |= trig[str[i]]
	}
	return a | b
}

// wordScan makes one pass over the words (runs of letters and digits) of str for the
// features fJWT, fBearer, fWords, fKeyword, fSecret and fNumber.
func wordScan(str string) uint16 {
	var f uint16
	digits := 0
	lastB64, lastAln := -1, -1 // the last byte that is not base64, not alphanumeric
	for i := 0; i < len(str); i++ {
		t := trig[str[i]]
		if t&tNotAln == 0 { // a letter or digit
			digits += int(t & tDigit)
			continue
		}
		if t&tNotB64 != 0 {
			if i-lastB64 > 40 {
				f |= fSecret
			}
			lastB64 = i
		}
		if n := i - lastAln - 1; n >= 4 || n == 3 && str[i-1]|0x20 == 'y' || n == 3 && str[i-1]|0x20 == 'd' {
			f |= wordFeatures(str[lastAln+1 : i])
		}
		lastAln = i
	}
	if len(str)-lastB64 > 40 {
		f |= fSecret
	}
	if n := len(str) - lastAln - 1; n >= 4 || n == 3 && str[len(str)-1]|0x20 == 'y' || n == 3 && str[len(str)-1]|0x20 == 'd' {
		f |= wordFeatures(str[lastAln+1:])
	}
	// An IPv4 address has 4 digits or more, any other number 8 or more.
	if digits >= 4 && numberCandidate(str) {
		f |= fNumber
	}
	return f
}

// wordFeatures returns the features of a word (a run of letters and digits) of at least 3
// bytes.
func wordFeatures(w string) uint16 {
	var f uint16
	if c := w[len(w)-1] | 0x20; (c == 'n' || c == 'y' || c == 't' || c == 'd') && keyword(w) {
		f |= fKeyword
	}
	if len(w) < 4 {
		return f
	}
	if w[0] == 'A' && w[3] == 'A' || class[w[0]]&class[w[1]]&(cUpper|cLower) != 0 && isDigit(w[2]) && isDigit(w[3]) {
		f |= fWords
	}
	if w[0] == 'e' && w[1] == 'y' && w[2] == 'J' {
		f |= fJWT
	}
	if len(w) >= 16 && glued(w) {
		f |= fJWT | fWords
	}
	if len(w) == 6 && w[0]|0x20 == 'b' && strings.EqualFold(w, "bearer") {
		f |= fBearer
	}
	return f
}

// glued reports whether w, a run of letters and digits, can be a number with a token glued
// to its end (4111111111111111AKIA..., 10eyJhbGci..., 2001:db8::acb9AKIA...): it is long,
// and "eyJ", AKIA, ASIA or ABIA follows hexadecimal digits in it. The detectors of tokens
// look for one after hexadecimal digits only.
func glued(w string) bool {
	if len(w) < 16 || !isHexDigit(w[0]) {
		return false
	}
	p := 1 // the first byte that is not a hexadecimal digit
	for p < len(w) && isHexDigit(w[p]) {
		p++
	}
	for k := max(p-2, 1); k < p && k+4 <= len(w); k++ {
		switch w[k : k+4] {
		case "AKIA", "ASIA", "ABIA":
			return true
		}
		if w[k:k+3] == "eyJ" {
			return true
		}
	}
	return false
}

// keyword reports whether a name ends in a word that announces a secret (any case): token,
// key, secret, password, passwd, pwd, as a word of its own (api_key, X-Auth-Token,
// accessToken, apikey; not monkey or 01JEAM3NQ6P5YFR9D33VKQHPWD).
func keyword(name string) bool {
	n, k := len(name), 0
	if !keywordEnd(name) {
		return false
	}
	switch name[n-1] | 0x20 {
	case 'n':
		k = suffix(name, "token")
	case 'y':
		k = suffix(name, "key")
		if k == 0 && (suffix(name, "apikey") > 0 || suffix(name, "secretkey") > 0 || suffix(name, "privatekey") > 0) {
			return true
		}
	case 't':
		k = suffix(name, "secret")
	case 'd':
		k = max(suffix(name, "pwd"), suffix(name, "passwd"), suffix(name, "password"))
	}
	if k == 0 {
		return false
	}
	p := n - k // where the word starts: the name's start, after a separator, or camelCase
	return p == 0 || !isAlnum(name[p-1]) || isUpper(name[p]) && class[name[p-1]]&cLower != 0
}

// keywordEnd reports whether name ends as a keyword can: in en, ey, et, wd or rd (any
// case), at least 3 bytes long.
func keywordEnd(name string) bool {
	n := len(name)
	if n < 3 {
		return false
	}
	a, b := name[n-2]|0x20, name[n-1]|0x20
	return a == 'e' && (b == 'n' || b == 'y' || b == 't') || b == 'd' && (a == 'w' || a == 'r')
}

// suffix returns len(word) if name ends in word (lower-case letters; name in any case),
// else 0.
func suffix(name, word string) int {
	if len(name) < len(word) {
		return 0
	}
	tail := name[len(name)-len(word):]
	for i := 0; i < len(word); i++ {
		if tail[i]|0x20 != word[i] {
			return 0
		}
	}
	return len(word)
}

// The bytes of runs of digits, for numberCandidate.
const (
	nDigit = 1 << iota
	nPlus  // '+' or '('
	nOther // any byte but a digit, '+', '(' or a separator (space, '-', '.', ')')
)

var numClass [256]uint8

// numberCandidate reports whether str has a run of digits and separators (space, '-', '.',
// '(', ')', '+') that numbers can accept: one with 13 digits or more (a card), 4 groups of
// digits (an IPv4 address, a card in groups), 3 groups and 9 digits (an SSN, a North
// American phone number), or 8 digits with a '+' or '(' (E.164) or a group starting with
// 0 (a national number). Like numbers, it starts no run at a group that follows a letter,
// '_' or '.'.
func numberCandidate(str string) bool {
	digits, groups, flagged := 0, 0, false
	for i := 0; i < len(str); {
		var gap uint8 // the bytes before the group, ORed
		for ; i < len(str); i++ {
			n := numClass[str[i]]
			if n&nDigit != 0 {
				break
			}
			gap |= n
		}
		if i == len(str) {
			return false
		}
		j := i + 1
		for j < len(str) && isDigit(str[j]) {
			j++
		}
		if gap&nOther != 0 {
			digits, groups, flagged = 0, 0, false
		}
		if groups == 0 && i > 0 && glue(str, i) {
			i = j
			continue
		}
		flagged = flagged || gap&nPlus != 0 || str[i] == '0'
		groups++
		digits += j - i
		if digits >= 13 || groups >= 4 || groups == 3 && digits >= 9 || digits >= 8 && flagged {
			return true
		}
		i = j
	}
	return false
}

// detect appends the matches in str to ms, running only the detectors that the features f
// (of prefilter) allow. Tokens that other values can be glued to (URL credentials, JWTs,
// AWS access key IDs, IBANs) are found first and blanked out of the text that the other detectors
// see, so that "10.0.0.1eyJhbGci..." is an address and a JWT, and no value is found twice.
func (s *Scrubber) detect(str string, f uint16, ms []match) []match {
	n := len(ms)
	if f&(fAt|fColon) == fAt|fColon && s.on(KindURLCredentials) {
		ms = urlCredentials(str, ms)
	}
	if f&fJWT != 0 && s.on(KindJWT) {
		ms = jwts(str, ms)
	}
	if f&fWords != 0 {
		ms = s.words(str, ms)
	}
	if len(ms) == n {
		return s.detectRest(str, f, ms)
	}
	b := blankPool.Get().(*[]byte)
	*b = append((*b)[:0], str...)
	for _, m := range ms[n:] {
		clear((*b)[m.start:m.end])
	}
	ms = s.detectRest(view(*b), f, ms)
	blankPool.Put(b)
	return ms
}

// detectRest appends the matches of the detectors that run on the text with the first
// detectors' matches blanked out (detect).
func (s *Scrubber) detectRest(str string, f uint16, ms []match) []match {
	if f&fBearer != 0 && s.on(KindBearer) {
		ms = bearers(str, ms)
	}
	if f&fAt != 0 && s.on(KindEmail) {
		ms = emails(str, ms)
	}
	if f&(fEq|fColon|fKeyword) != 0 {
		ms = s.named(str, f, ms)
	}
	if f&fSecret != 0 && s.on(KindAWSSecret) {
		ms = secrets(str, ms)
	}
	if f&fNumber != 0 {
		ms = s.numbers(str, ms)
	}
	if f&fColons != 0 && s.on(KindIP) {
		ms = ipv6s(str, ms)
	}
	return ms
}

// blankPool holds the buffers of texts with the first detectors' matches blanked out.
var blankPool = sync.Pool{New: func() any { return new([]byte) }}

// merge sorts ms by position and unites overlapping matches; a union of differing spans is
// redacted whatever the mode.
func merge(ms []match) []match {
	slices.SortStableFunc(ms, func(a, b match) int {
		switch {
		case a.start != b.start:
			return a.start - b.start
		case a.end != b.end:
			return b.end - a.end
		case a.weak != b.weak:
			if a.weak {
				return 1
			}
			return -1
		}
		return 0
	})
	out := ms[:1]
	for _, m := range ms[1:] {
		last := &out[len(out)-1]
		if m.start < last.end {
			if m.end > last.end {
				last.end, last.force = m.end, true
			}
			continue
		}
		out = append(out, m)
	}
	return out
}

// urlCredentials finds the userinfo of URLs: scheme://userinfo@host.
func urlCredentials(str string, ms []match) []match {
	for i := 0; ; {
		k := strings.Index(str[i:], "://")
		if k < 0 {
			return ms
		}
		p := i + k + 3
		j := p
		for j < len(str) && isUserinfo(str[j]) {
			j++
		}
		if j > p && j < len(str) && str[j] == '@' {
			ms = append(ms, match{start: p, end: j, kind: KindURLCredentials})
		}
		i = p
	}
}

// jwts finds JSON Web Tokens: header.payload.signature, header and payload base64url JSON
// objects (starting "ey"), alone or glued to the end of a number (glued).
func jwts(str string, ms []match) []match {
	// The run of letters and digits around "eyJ", and whether it has a byte before p that is
	// not a hexadecimal digit.
	word, wordEnd, scanned, nonHex := 0, 0, 0, false
	for i := 0; ; {
		k := strings.Index(str[i:], "eyJ")
		if k < 0 {
			return ms
		}
		p := i + k
		i = p + 3
		for ; scanned < p; scanned++ {
			switch c := str[scanned]; {
			case !isAlnum(c):
				word, nonHex = scanned+1, false
			case !isHexDigit(c):
				nonHex = true
			}
		}
		if wordEnd <= p {
			for wordEnd = p; wordEnd < len(str) && isAlnum(str[wordEnd]); wordEnd++ {
			}
		}
		if p > 0 && (isB64URL(str[p-1]) || str[p-1] == '.') && !(isAlnum(str[p-1]) && !nonHex && glued(str[word:wordEnd])) {
			continue
		}
		// A start inside a segment that fails fails alike: go on after it.
		end, ok := jwtSegment(str, p, true)
		if !ok {
			i = max(i, end)
			continue
		}
		end2, ok := jwtSegment(str, end+1, true)
		if !ok {
			i = max(i, end)
			continue
		}
		end, _ = jwtSegment(str, end2+1, false)
		ms = append(ms, match{start: p, end: end, kind: KindJWT})
		i = end
	}
}

// jwtSegment scans a base64url segment from p; a header or payload segment must start
// "ey", be at least 10 characters long and be followed by a dot.
func jwtSegment(str string, p int, dotted bool) (int, bool) {
	j := p
	for j < len(str) && isB64URL(str[j]) {
		j++
	}
	if !dotted {
		return j, true
	}
	return j, strings.HasPrefix(str[p:], "ey") && j-p >= 10 && j < len(str) && str[j] == '.'
}

// words finds, in runs of letters and digits, AWS access key IDs and IBANs. A key ID is
// AKIA, ASIA, ABIA or ACCA followed by 16 upper-case letters or digits, alone or glued to
// the end of a number (glued), ending the run or followed by a lower-case letter (a secret
// glued to it).
func (s *Scrubber) words(str string, ms []match) []match {
	keys, ibans := s.on(KindAWSKeyID), s.on(KindIBAN)
	for i := 0; i < len(str); {
		if !isAlnum(str[i]) {
			i++
			continue
		}
		j := runEnd(str, i, isAlnum)
		key := false
		for k := i; keys && k+20 <= j && (k == i || glued(str[i:j])); k++ {
			if e := k + 20; str[k] == 'A' && isKeyID(str[k:e]) && (e == j || !isUpper(str[e]) && !isDigit(str[e])) {
				ms, key = append(ms, match{start: k, end: e, kind: KindAWSKeyID}), true
				break
			}
			if !isHexDigit(str[k]) {
				break
			}
		}
		if !key && ibans && j-i >= 4 && (i == 0 || str[i-1] != '_') {
			if e := ibanEnd(str, i, j); e > 0 {
				ms = append(ms, match{start: i, end: e, kind: KindIBAN})
				j = e
			}
		}
		i = j
	}
	return ms
}

// bearers finds the token of "Bearer TOKEN" (any case; "Bearer: TOKEN" and "bearer=TOKEN"
// too).
func bearers(str string, ms []match) []match {
	for i := 0; i+7 < len(str); i++ {
		if str[i]|0x20 != 'b' || !strings.EqualFold(str[i:i+6], "bearer") || (i > 0 && isWord(str[i-1])) {
			continue
		}
		p := i + 6
		if str[p] == ':' || str[p] == '=' {
			p++
		}
		for p < len(str) && (str[p] == ' ' || str[p] == '\t') {
			p++
		}
		if p == i+6 {
			continue
		}
		j, cls := p, uint8(0)
		for j < len(str) && isToken(str[j]) {
			cls |= class[str[j]]
			j++
		}
		// Not a word: a digit or punctuation, or at least 16 characters of mixed case.
		strong := cls&^(cUpper|cLower|cHex) != 0 || j-p >= 16 && cls&(cUpper|cLower) == cUpper|cLower
		if j-p >= 8 && strong {
			ms = append(ms, match{start: p, end: j, kind: KindBearer})
		}
		i = max(i, j-1)
	}
	return ms
}

// emails finds local@domain.tld.
func emails(str string, ms []match) []match {
	local := 0 // where the run of local-part characters before i starts
	for i := 0; i < len(str); i++ {
		if c := str[i]; c != '@' {
			if !isLocal(c) {
				local = i + 1
			}
			continue
		}
		l := local
		for l < i && str[l] == '.' {
			l++
		}
		local = i + 1
		if end := domainEnd(str, i+1); l < i && end > 0 {
			ms = append(ms, match{start: l, end: end, kind: KindEmail})
			i, local = end-1, end
		}
	}
	return ms
}

// domainEnd returns the end of a domain name with a dot and an alphabetic top-level
// domain starting at p, or 0.
func domainEnd(str string, p int) int {
	j := p
	for j < len(str) && isHost(str[j]) {
		j++
	}
	for j > p && (str[j-1] == '.' || str[j-1] == '-') {
		j--
	}
	dom := str[p:j]
	dot := strings.LastIndexByte(dom, '.')
	if dot <= 0 || len(dom)-dot-1 < 2 {
		return 0
	}
	for i := dot + 1; i < len(dom); i++ {
		if class[dom[i]]&(cUpper|cLower) == 0 {
			return 0
		}
	}
	for label := range strings.SplitSeq(dom, ".") {
		if label == "" || label[0] == '-' || label[len(label)-1] == '-' {
			return 0
		}
	}
	return j
}

// named finds values by the name before them: name=value, name: value and, the name
// quoted, "name": "value" as JSON writes it (in a string too), and a token after a
// keyword and spaces ("token ya29.a0Af..."). Names are those FieldKind knows, keywords and
// phone names (nameKind).
func (s *Scrubber) named(str string, f uint16, ms []match) []match {
	query := -1
	if f&fEq != 0 {
		query = strings.IndexByte(str, '?')
	}
	for _, sep := range [...]byte{'=', ':'} {
		if sep == '=' && f&fEq == 0 || sep == ':' && f&fColon == 0 {
			continue
		}
		for i := 0; ; {
			k := strings.IndexByte(str[i:], sep)
			if k < 0 {
				break
			}
			var e int
			ms, e = s.afterSep(str, i+k, query >= 0 && query < i+k, ms)
			i = max(i+k+1, e)
		}
	}
	if f&fKeyword == 0 || !s.on(KindParam) {
		return ms
	}
	for i := 0; i < len(str); {
		if !isName(str[i]) {
			i++
			continue
		}
		j := runEnd(str, i, isName)
		if keyword(str[i:j]) {
			ms, j = afterSpace(str, j, ms)
		}
		i = j
	}
	return ms
}

// isName: the characters of a field or parameter name.
func isName(c byte) bool { return isWord(c) || c == '-' || c == '.' }

// nameKind returns the kind of the values of a name, and whether only values that look
// like secrets (tokenLike) count: a name that FieldKind knows, a keyword (api_key,
// X-Auth-Token) as a parameter, a phone name as a phone when the value, starting with c,
// can be a number.
func (s *Scrubber) nameKind(name string, c byte) (k Kind, weak, ok bool) {
	if k, ok := s.FieldKind(name); ok {
		return k, false, true
	}
	if keyword(name) && s.on(KindParam) {
		return KindParam, true, true
	}
	if (isDigit(c) || c == '+' || c == '(' || c == '"' || c == '\'') && phoneName(name) && s.on(KindPhone) {
		return KindPhone, false, true
	}
	return 0, false, false
}

// afterSep matches the value after the separator str[sep] ('=' or ':') when the name
// before it says it is personal data or a secret, and returns ms and where the value ends
// (sep when there is none). In a URI's query (inURI), a '#' ends a value; elsewhere it is
// part of a password.
func (s *Scrubber) afterSep(str string, sep int, inURI bool, ms []match) ([]match, int) {
	n := sep
	for n > 0 && str[n-1] == ' ' {
		n--
	}
	spaced := n < sep
	quotedName := n > 0 && (str[n-1] == '"' || str[n-1] == '\'')
	if quotedName {
		n--
	}
	e := n
	for n > 0 && isName(str[n-1]) {
		n--
	}
	if n == e {
		return ms, sep
	}
	// Spaces after '=' only in "name = value".
	v := sep + 1
	for (str[sep] == ':' || spaced) && v < len(str) && (str[v] == ' ' || str[v] == '\t' || str[v] == '[' && str[sep] == ':') {
		v++
	}
	c := byte(0)
	if v < len(str) {
		c = str[v]
	}
	kind, weak, ok := s.nameKind(str[n:e], c)
	if !ok {
		return ms, sep
	}
	if v < len(str) && (str[v] == '"' || str[v] == '\'') {
		q := strings.IndexByte(str[v+1:], str[v])
		end := len(str)
		if q >= 0 {
			end = v + 1 + q
		}
		val := str[v+1 : end]
		if weak { // a name alone says less: the token that starts the value
			t := 0
			for t < len(val) && isToken(val[t]) {
				t++
			}
			val = val[:t]
		}
		if val != "" && (kind != KindPhone || phoneShaped(val)) && (!weak || tokenLike(val, 8)) {
			ms = append(ms, match{start: v + 1, end: v + 1 + len(val), kind: kind, weak: weak})
		}
		return ms, end
	}
	end := v
	switch {
	case kind == KindPhone:
		for end < len(str) && (isDigit(str[end]) || strings.IndexByte("+-.()", str[end]) >= 0) {
			end++
		}
		if !phoneShaped(str[v:end]) {
			return ms, end
		}
	case kind == KindHeader && !quotedName:
		end = headerEnd(str, v)
	case str[sep] == '=' || quotedName:
		for end < len(str) && (!endsValue(str[end]) || str[end] == '#' && (end == v || !inURI)) {
			end++
		}
		if weak && !tokenLike(str[v:end], 8) {
			return ms, end
		}
	default: // name: value in text
		for end < len(str) && isToken(str[end]) {
			end++
		}
		if passwordName(str[n:e]) {
			for end < len(str) && str[end] > ' ' && (!endsValue(str[end]) || str[end] == '#') {
				end++
			}
			if end-v < 6 {
				return ms, end
			}
		} else if !tokenLike(str[v:end], 6) || weak && end-v < 8 {
			return ms, end
		}
	}
	if end > v {
		ms = append(ms, match{start: v, end: end, kind: kind, weak: weak})
	}
	return ms, end
}

// passwordName reports whether a name is that of a password, whose value in "name: value"
// is whatever follows up to a space: password, passwd, pwd, pass, secret, client_secret.
func passwordName(name string) bool {
	var buf [maxName]byte
	key, ok := normalizeName(&buf, name)
	if !ok {
		return false
	}
	switch string(key) {
	case "password", "passwd", "pwd", "pass", "secret", "client_secret":
		return true
	}
	return false
}

// afterSpace matches a token after the keyword ending at str[k] and spaces, and returns ms
// and where the token ends (k when there is none): one of at least 16 characters that
// looks like a secret (tokenLike).
func afterSpace(str string, k int, ms []match) ([]match, int) {
	v := k
	for v < len(str) && (str[v] == ' ' || str[v] == '\t') {
		v++
	}
	if v == k {
		return ms, k
	}
	end := v
	for end < len(str) && isToken(str[end]) {
		end++
	}
	if end-v >= 16 && tokenLike(str[v:end], 16) {
		ms = append(ms, match{start: v, end: end, kind: KindParam, weak: true})
		return ms, end
	}
	return ms, v
}

// tokenLike reports whether v, at least min characters of a token's (isToken), looks like
// a secret rather than a word or a number: it mixes letters and digits, or cases.
func tokenLike(v string, min int) bool {
	if len(v) < min {
		return false
	}
	var cls uint8
	for i := 0; i < len(v); i++ {
		if !isToken(v[i]) {
			return false
		}
		cls |= class[v[i]]
	}
	letters := cls & (cUpper | cLower)
	return cls&cDigit != 0 && letters != 0 || letters == cUpper|cLower
}

// headerEnd returns the end of a sensitive header's value written "Name: value" in text,
// starting at v: an authorization scheme and its credentials (Bearer x, Digest a=1, b=2),
// or a value and those that a ';' or ',' continues (Cookie: a=1; b=2), ending at the end
// of the line, a quote, a ']' (Go's "map[Name:[value]]") or a '&' (authorization=... in a
// query).
func headerEnd(str string, v int) int {
	stop := func(c byte) bool { return c == '\r' || c == '\n' || c == '"' || c == ']' || c == '&' }
	word := func(p int) int {
		for p < len(str) && str[p] != ' ' && str[p] != '\t' && !stop(str[p]) {
			p++
		}
		return p
	}
	end := word(v)
	scheme := end > v
	for i := v; i < end; i++ {
		scheme = scheme && class[str[i]]&(cUpper|cLower) != 0
	}
	for end < len(str) && (str[end] == ' ' || str[end] == '\t') {
		next := end
		for next < len(str) && (str[next] == ' ' || str[next] == '\t') {
			next++
		}
		e := word(next)
		// The credentials after a scheme; then only pairs (a=1) after a ';' or ','.
		if c := str[end-1]; e == next || !scheme && (c != ';' && c != ',' || strings.IndexByte(str[next:e], '=') < 0) {
			break
		}
		scheme = false
		end = e
	}
	return end
}

// phoneName reports whether a field or parameter name says that its value is a phone
// number: it holds phone, mobile or msisdn, or tel or fax between '_' or '-' (any case).
func phoneName(name string) bool {
	n := len(name)
	if n < 3 || n > maxName {
		return false
	}
	switch name[n-1] | 0x20 {
	case 'e', 'n', 'l', 'r', 'x', 's':
	default:
		return false
	}
	for i := 0; i+3 <= n; i++ {
		switch rest := name[i:]; rest[0] | 0x20 {
		case 'p':
			if suffix(rest[:min(5, len(rest))], "phone") > 0 {
				return true
			}
		case 'm':
			if len(rest) >= 6 && (suffix(rest[:6], "mobile") > 0 || suffix(rest[:6], "msisdn") > 0) {
				return true
			}
		case 't', 'f':
			word := (i == 0 || name[i-1] == '_' || name[i-1] == '-') && (i+3 == n || name[i+3] == '_' || name[i+3] == '-')
			if word && (suffix(rest[:3], "tel") > 0 || suffix(rest[:3], "fax") > 0) {
				return true
			}
		}
	}
	return false
}

// phoneShaped reports whether v is a bare phone number: an optional '+', 7 to 15 digits
// and separators (space, '-', '.', parentheses) and nothing else.
func phoneShaped(v string) bool {
	digits := 0
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case isDigit(c):
			digits++
		case c == '+' && i == 0, c == ' ' || c == '-' || c == '.' || c == '(' || c == ')':
		default:
			return false
		}
	}
	return digits >= 7 && digits <= 15
}

// runEnd returns the end of the run of bytes of class in that starts at str[i].
func runEnd(str string, i int, in func(byte) bool) int {
	for i < len(str) && in(str[i]) {
		i++
	}
	return i
}

// isKeyID reports whether w, 20 characters, is an AWS access key ID.
func isKeyID(w string) bool {
	switch w[:4] {
	case "AKIA", "ASIA", "ABIA", "ACCA":
	default:
		return false
	}
	for i := 4; i < len(w); i++ {
		if !isUpper(w[i]) && !isDigit(w[i]) {
			return false
		}
	}
	return true
}

// ibanEnd returns the end of an IBAN starting at i, whose first run of letters and digits
// ends at j, written plain or in groups of four; or 0.
func ibanEnd(str string, i, j int) int {
	lower := class[str[i]]&cLower != 0 // all in lower case: es18 6281 9017 ...
	letter := func(c byte) bool { return isUpper(c) || lower && class[c]&cLower != 0 }
	if !letter(str[i]) || !letter(str[i+1]) || !isDigit(str[i+2]) || !isDigit(str[i+3]) ||
		!ibanCountry[int(str[i]&^0x20-'A')*26+int(str[i+1]&^0x20-'A')] || !ibanChars(str[i:j], lower) {
		return 0
	}
	if n := j - i; n != 4 {
		if n >= 15 && n <= 34 && mod97(str[i:j]) {
			return j
		}
		return 0
	}
	// Groups of four, the check computed as they come: the longest that passes wins.
	end, total, r := 0, 4, 0
	for e := j; e+1 < len(str) && str[e] == ' '; {
		k := runEnd(str, e+1, isAlnum)
		if k-e-1 > 4 || k == e+1 || !ibanChars(str[e+1:k], lower) || total+k-e-1 > 34 {
			break
		}
		total += k - e - 1
		for _, c := range []byte(str[e+1 : k]) {
			r = mod97Add(r, c)
		}
		if total >= 15 && mod97Add(mod97Add(mod97Add(mod97Add(r, str[i]), str[i+1]), str[i+2]), str[i+3]) == 1 {
			end = k
		}
		if k-e-1 < 4 {
			break
		}
		e = k
	}
	return end
}

// ibanChars reports whether w has only digits and upper-case letters, or lower-case ones.
func ibanChars(w string, lower bool) bool {
	letters := uint8(cUpper)
	if lower {
		letters = cLower
	}
	for i := 0; i < len(w); i++ {
		if class[w[i]]&(cDigit|letters) == 0 {
			return false
		}
	}
	return true
}

// mod97 checks an IBAN (spaces ignored): moved first four characters to the end, letters
// as 10..35, the number modulo 97 is 1.
func mod97(iban string) bool {
	r := 0
	for i := 4; i < len(iban); i++ {
		r = mod97Add(r, iban[i])
	}
	for i := 0; i < 4; i++ {
		r = mod97Add(r, iban[i])
	}
	return r == 1
}

// mod97Add returns the remainder r of mod97 with the character c appended; spaces and
// other characters add nothing.
func mod97Add(r int, c byte) int {
	switch {
	case isDigit(c):
		return (r*10 + int(c-'0')) % 97
	case class[c]&(cUpper|cLower) != 0:
		return (r*100 + int(c&^0x20-'A') + 10) % 97
	}
	return r
}

// secrets finds AWS secret access keys: runs of exactly 40 base64 characters that look
// random (secretLike), or such a stretch of a longer run between its ends and '/' (a
// segment of a URI's path: /accounts/KEY/sessions).
func secrets(str string, ms []match) []match {
	for i := 0; i < len(str); {
		if !isB64(str[i]) {
			i++
			continue
		}
		j := runEnd(str, i, isB64)
		// The run's ends must not be in a longer token; a '/' inside it is an end too.
		left := i == 0 || !isB64URL(str[i-1]) && (str[i-1] != '=' || i >= 2 && isWord(str[i-2]))
		right := j == len(str) || !isB64URL(str[j]) && str[j] != '='
		for s := i; s+40 <= j; {
			e := s + 40
			if (s > i || left) && (e < j && str[e] == '/' || e == j && right) && secretLike(str[s:e]) &&
				(s == i && e == j || !pathWord(str[s:e])) {
				ms = append(ms, match{start: s, end: e, kind: KindAWSSecret})
				s = e
			}
			k := strings.IndexByte(str[s:j], '/')
			if k < 0 {
				break
			}
			s += k + 1
		}
		i = j
	}
	return ms
}

// pathWord reports whether w, part of a longer run of base64 characters, holds a word of
// a URI's path between its slashes (users/01J3M6T2JR2230YW4KPFTD5Q53/profile): 4 lower-case
// letters or more.
func pathWord(w string) bool {
	n := 0 // lower-case letters since the last '/'; -1 after any other byte
	for i := 0; i <= len(w); i++ {
		switch {
		case i == len(w) || w[i] == '/':
			if n >= 4 {
				return true
			}
			n = 0
		case n >= 0 && class[w[i]]&cLower != 0:
			n++
		default:
			n = -1
		}
	}
	return false
}

// secretLike reports whether w looks random: at least 3 upper-case and 3 lower-case
// letters, and a digit, '+' or '/' or else at least 8 upper-case letters.
func secretLike(w string) bool {
	upper, lower := 0, 0
	for i := 0; i < len(w); i++ {
		switch c := w[i]; {
		case isUpper(c):
			upper++
		case class[c]&cLower != 0:
			lower++
		}
	}
	return upper >= 3 && lower >= 3 && (upper+lower < len(w) || upper >= 8)
}

// ipv6s finds IPv6 addresses.
func ipv6s(str string, ms []match) []match {
	for i := 0; i < len(str); {
		k := strings.IndexByte(str[i:], ':')
		if k < 0 {
			return ms
		}
		c := i + k
		l := c
		for l > 0 && isIP6(str[l-1]) {
			l--
		}
		r := c + 1
		for r < len(str) && isIP6(str[r]) {
			r++
		}
		i = r
		if r-l >= 3 && str[l] == ':' && (str[l+1] != ':' || str[l+2] == ':') { // name:fdc5:..., name:::1, not ::1
			l++
		}
		for r > l && str[r-1] == '.' {
			r--
		}
		if r-l >= 2 && str[r-1] == ':' && str[r-2] != ':' {
			r--
		}
		if r-l < 3 || (l > 0 && isWord(str[l-1])) || (r < len(str) && isWord(str[r])) ||
			strings.Count(str[l:r], ":") < 2 {
			continue
		}
		if a, err := netip.ParseAddr(str[l:r]); err == nil && a.Is6() && !a.IsLoopback() && !a.IsUnspecified() {
			ms = append(ms, match{start: l, end: r, kind: KindIP})
		}
	}
	return ms
}
