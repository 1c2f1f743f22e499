package pii

import (
	"net/netip"
	"strings"
)

// match is a detected value: str[start:end] of the given kind. force redacts it whatever
// the kind's mode (set when overlapping matches were merged).
type match struct {
	start, end int
	kind       Kind
	force      bool
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
	tPct    // %, of "%40" (an @) and "%2B" (a +)
	tB      // b or B, of "bearer"
	tNotB64 // any byte but letters, digits, + and /
	tNotAln // any byte but letters and digits: it ends a word
)

// Features of a string, found by prefilter: each lets some detectors run.
const (
	fAt     = 1 << iota // an @
	fEq                 // an =
	fColon              // a :
	fColons             // two colons or more
	fPct40              // "%40", a percent-encoded @
	fJWT                // a word starting "eyJ"
	fBearer             // the word "bearer", any case
	fWords              // a word "A..A" (AWS key ID) or letter, letter, digit, digit (IBAN)
	fSecret             // a run of exactly 40 base64 characters
	fNumber             // a run of digits that numbers can accept (numberCandidate)

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
	trig['%'] |= tPct
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
	if acc&tPct != 0 && strings.Contains(str, "%40") {
		f |= fPct40
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
// features fJWT, fBearer, fWords, fSecret and fNumber.
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
			if i-lastB64 == 41 {
				f |= fSecret
			}
			lastB64 = i
		}
		if i-lastAln > 4 {
			f |= wordFeatures(str[lastAln+1 : i])
		}
		lastAln = i
	}
	if len(str)-lastB64 == 41 {
		f |= fSecret
	}
	if len(str)-lastAln > 4 {
		f |= wordFeatures(str[lastAln+1:])
	}
	// An IPv4 address has 4 digits or more, any other number 8 or more.
	if digits >= 4 && numberCandidate(str) {
		f |= fNumber
	}
	return f
}

// wordFeatures returns the features of a word (a run of letters and digits) of at least 4
// bytes.
func wordFeatures(w string) uint16 {
	var f uint16
	if w[0] == 'A' && w[3] == 'A' || isUpper(w[0]) && isUpper(w[1]) && isDigit(w[2]) && isDigit(w[3]) {
		f |= fWords
	}
	if w[0] == 'e' && w[1] == 'y' && w[2] == 'J' {
		f |= fJWT
	}
	if len(w) == 6 && w[0]|0x20 == 'b' && strings.EqualFold(w, "bearer") {
		f |= fBearer
	}
	return f
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
// '_' or '.', unless the letter ends "%2B", a percent-encoded '+'.
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
		switch {
		case groups > 0 || i == 0 || !isWord(str[i-1]) && str[i-1] != '.':
			flagged = flagged || gap&nPlus != 0 || str[i] == '0'
		case i >= 3 && str[i-3] == '%' && str[i-2] == '2' && str[i-1]|0x20 == 'b':
			flagged = true
		default:
			i = j
			continue
		}
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
// (of prefilter) allow.
func (s *Scrubber) detect(str string, f uint16, ms []match) []match {
	// Detectors that others defer to run first: URL credentials before emails, JWTs
	// before bearer tokens and secrets.
	if f&(fAt|fColon) == fAt|fColon && s.on(KindURLCredentials) {
		ms = urlCredentials(str, ms)
	}
	if f&fJWT != 0 && s.on(KindJWT) {
		ms = jwts(str, ms)
	}
	if f&fBearer != 0 && s.on(KindBearer) {
		ms = bearers(str, ms)
	}
	if f&(fAt|fPct40) != 0 && s.on(KindEmail) {
		ms = emails(str, ms)
	}
	if f&fEq != 0 {
		ms = s.params(str, ms)
	}
	if f&fColon != 0 && s.on(KindHeader) {
		ms = s.headers(str, ms)
	}
	if f&fWords != 0 {
		ms = s.words(str, ms)
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

// covered reports whether position i lies in a match.
func covered(ms []match, i int) bool {
	for _, m := range ms {
		if m.start <= i && i < m.end {
			return true
		}
	}
	return false
}

// merge sorts ms by position and unites overlapping matches; a union of differing spans is
// redacted whatever the mode.
func merge(ms []match) []match {
	for i := 1; i < len(ms); i++ {
		for j := i; j > 0 && (ms[j].start < ms[j-1].start ||
			ms[j].start == ms[j-1].start && ms[j].end > ms[j-1].end); j-- {
			ms[j], ms[j-1] = ms[j-1], ms[j]
		}
	}
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
// objects (starting "ey").
func jwts(str string, ms []match) []match {
	for i := 0; ; {
		k := strings.Index(str[i:], "eyJ")
		if k < 0 {
			return ms
		}
		p := i + k
		i = p + 3
		if p > 0 && (isB64URL(str[p-1]) || str[p-1] == '.') {
			continue
		}
		end, ok := jwtSegment(str, p, true)
		if !ok {
			continue
		}
		end, ok = jwtSegment(str, end+1, true)
		if !ok {
			continue
		}
		end, _ = jwtSegment(str, end+1, false)
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

// bearers finds the token of "Bearer TOKEN" (any case).
func bearers(str string, ms []match) []match {
	for i := 0; i+7 < len(str); i++ {
		if str[i]|0x20 != 'b' || !strings.EqualFold(str[i:i+6], "bearer") || (i > 0 && isWord(str[i-1])) {
			continue
		}
		p := i + 6
		for p < len(str) && str[p] == ' ' {
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
		if j-p >= 8 && strong && !covered(ms, p) {
			ms = append(ms, match{start: p, end: j, kind: KindBearer})
		}
		i = j - 1
	}
	return ms
}

// emails finds local@domain.tld, with the @ also percent-encoded.
func emails(str string, ms []match) []match {
	for i := 0; i < len(str); i++ {
		at := 0
		switch {
		case str[i] == '@':
			at = 1
		case str[i] == '%' && i+2 < len(str) && str[i+1] == '4' && str[i+2] == '0':
			at = 3
		default:
			continue
		}
		if i == 0 || covered(ms, i-1) {
			continue
		}
		l := i
		for l > 0 && isLocal(str[l-1]) {
			l--
		}
		for l < i && str[l] == '.' {
			l++
		}
		end := domainEnd(str, i+at)
		if l < i && end > 0 {
			ms = append(ms, match{start: l, end: end, kind: KindEmail})
			i = end - 1
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

// params finds the values of sensitive name=value pairs.
func (s *Scrubber) params(str string, ms []match) []match {
	for i := 0; ; {
		k := strings.IndexByte(str[i:], '=')
		if k < 0 {
			return ms
		}
		eq := i + k
		i = eq + 1
		n := eq
		for n > 0 && (isWord(str[n-1]) || str[n-1] == '-' || str[n-1] == '.') {
			n--
		}
		if n == eq {
			continue
		}
		kind, ok := s.FieldKind(str[n:eq])
		if !ok {
			continue
		}
		v := eq + 1
		for v < len(str) && !endsValue(str[v]) {
			v++
		}
		if v > eq+1 {
			ms = append(ms, match{start: eq + 1, end: v, kind: kind})
			i = v
		}
	}
}

// headers finds the values of sensitive headers written "Name: value" (up to the end of
// the line, a quote or a ']'; Go's "map[Name:[value]]" too).
func (s *Scrubber) headers(str string, ms []match) []match {
	for i := 0; ; {
		k := strings.IndexByte(str[i:], ':')
		if k < 0 {
			return ms
		}
		colon := i + k
		i = colon + 1
		n := colon
		for n > 0 && (isWord(str[n-1]) || str[n-1] == '-') {
			n--
		}
		if kind, ok := s.FieldKind(str[n:colon]); n == colon || !ok || kind != KindHeader {
			continue
		}
		v := colon + 1
		for v < len(str) && (str[v] == ' ' || str[v] == '[') {
			v++
		}
		e := v
		for e < len(str) && str[e] != '\r' && str[e] != '\n' && str[e] != '"' && str[e] != ']' {
			e++
		}
		if e > v {
			ms = append(ms, match{start: v, end: e, kind: KindHeader})
			i = e
		}
	}
}

// words finds AWS access key IDs and IBANs in runs of letters and digits.
func (s *Scrubber) words(str string, ms []match) []match {
	for i := 0; i < len(str); {
		if !isAlnum(str[i]) {
			i++
			continue
		}
		j := i
		for j < len(str) && isAlnum(str[j]) {
			j++
		}
		switch {
		case j-i == 20 && s.on(KindAWSKeyID) && isKeyID(str[i:j]):
			ms = append(ms, match{start: i, end: j, kind: KindAWSKeyID})
		case j-i >= 4 && s.on(KindIBAN) && (i == 0 || str[i-1] != '_'):
			if e := ibanEnd(str, i, j); e > 0 {
				ms = append(ms, match{start: i, end: e, kind: KindIBAN})
				j = e
			}
		}
		i = j
	}
	return ms
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
	if !isUpper(str[i]) || !isUpper(str[i+1]) || !isDigit(str[i+2]) || !isDigit(str[i+3]) ||
		!ibanCountry[int(str[i]-'A')*26+int(str[i+1]-'A')] || !upperDigits(str[i:j]) {
		return 0
	}
	if n := j - i; n != 4 {
		if n >= 15 && n <= 34 && mod97(str[i:j]) {
			return j
		}
		return 0
	}
	var ends [9]int
	groups, total := 0, 4
	for e := j; groups < len(ends) && e+1 < len(str) && str[e] == ' '; {
		k := e + 1
		for k < len(str) && isAlnum(str[k]) {
			k++
		}
		if k-e-1 > 4 || k == e+1 || !upperDigits(str[e+1:k]) {
			break
		}
		total += k - e - 1
		ends[groups] = k
		groups++
		if total > 34 || k-e-1 < 4 {
			break
		}
		e = k
	}
	for g := groups - 1; g >= 0; g-- {
		if n := ends[g] - i - g - 1; n >= 15 && n <= 34 && mod97(str[i:ends[g]]) {
			return ends[g]
		}
	}
	return 0
}

func upperDigits(w string) bool {
	for i := 0; i < len(w); i++ {
		if !isUpper(w[i]) && !isDigit(w[i]) {
			return false
		}
	}
	return true
}

// mod97 checks an IBAN (spaces ignored): moved first four characters to the end, letters
// as 10..35, the number modulo 97 is 1.
func mod97(iban string) bool {
	r := 0
	add := func(c byte) {
		switch {
		case isDigit(c):
			r = (r*10 + int(c-'0')) % 97
		case isUpper(c):
			r = (r*100 + int(c-'A') + 10) % 97
		}
	}
	for i := 4; i < len(iban); i++ {
		add(iban[i])
	}
	for i := 0; i < 4; i++ {
		add(iban[i])
	}
	return r == 1
}

// secrets finds AWS secret access keys: runs of exactly 40 base64 characters that look
// random (secretLike).
func secrets(str string, ms []match) []match {
	for i := 0; i < len(str); {
		if !isB64(str[i]) {
			i++
			continue
		}
		j := i
		for j < len(str) && isB64(str[j]) {
			j++
		}
		if j-i == 40 && (i == 0 || !isB64URL(str[i-1]) && str[i-1] != '=') &&
			(j == len(str) || !isB64URL(str[j]) && str[j] != '=') && secretLike(str[i:j]) && !covered(ms, i) {
			ms = append(ms, match{start: i, end: j, kind: KindAWSSecret})
		}
		i = j
	}
	return ms
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
		for r > l && str[r-1] == '.' {
			r--
		}
		if r-l >= 2 && str[r-1] == ':' && str[r-2] != ':' {
			r--
		}
		if r-l < 3 || (l > 0 && isWord(str[l-1])) || (r < len(str) && isWord(str[r])) ||
			strings.Count(str[l:r], ":") < 2 || covered(ms, l) {
			continue
		}
		if a, err := netip.ParseAddr(str[l:r]); err == nil && a.Is6() && !a.IsLoopback() && !a.IsUnspecified() {
			ms = append(ms, match{start: l, end: r, kind: KindIP})
		}
	}
	return ms
}
