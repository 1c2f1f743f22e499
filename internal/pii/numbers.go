package pii

// Numbers (cards, SSNs, IPv4 addresses, phones) are found in chunks: runs of digit groups
// joined by one separator each (space, dash, dot, or the closing parenthesis of a
// parenthesised group), optionally led by '+'. Each detector then looks for the longest
// run of whole groups it accepts, starting and ending at the chunk's edges or at spaces, so
// that a card inside "ref 12 4111 1111 1111 1111" is found, while the tail of a version
// string or of a date is not.

// maxGroups bounds the groups of a chunk; a longer chunk is cut, and the next one starts 8
// groups before the cut.
const maxGroups = 24

// group is one run of digits of a chunk: str[start:end], lo being where it starts
// including a '(' (or, for the first group, a leading '+').
type group struct {
	lo, start, end int
	sep            byte // separator before the group: 0 for the first, ' ', '-', '.' or ')'
	paren          bool // the group is parenthesised
}

// chunk is a parsed run of digit groups.
type chunk struct {
	g          [maxGroups]group
	n          int
	plus       bool
	digitCount int // digits in all groups
}

// numbers finds cards, SSNs, IPv4 addresses and phone numbers.
func (s *Scrubber) numbers(str string, ms []match) []match {
	var ch chunk
	for i := 0; i < len(str); {
		c := str[i]
		if !isDigit(c) && c != '+' && c != '(' {
			i++
			continue
		}
		if i > 0 && glue(str, i) {
			for i++; i < len(str) && isWord(str[i]); i++ {
			}
			continue
		}
		if !isDigit(c) && (i+1 >= len(str) || !isDigit(str[i+1])) {
			i++
			continue
		}
		next := ch.parse(str, i)
		if ch.n == 0 {
			i++
			continue
		}
		ms = s.classify(str, &ch, ms)
		if ch.n == maxGroups {
			// Cut: go on from a group early enough that every value (at most 8 groups)
			// crossing the cut lies whole in the next chunk.
			next = ch.g[maxGroups-8].lo
		}
		i = next
	}
	return ms
}

// glue reports whether the number at str[i] is part of a word or another number: it
// follows a letter, digit, '_' or '.', or a '-' or '_' after a letter (ORD-0221501874).
func glue(str string, i int) bool {
	c := str[i-1]
	return isWord(c) || c == '.' || c == '-' && i >= 2 && class[str[i-2]]&(cUpper|cLower) != 0
}

// clock reports whether the number at str[lo] is the seconds of a time (15:10:22.123456):
// it follows two digits and a colon.
func clock(str string, lo int) bool {
	return lo >= 3 && str[lo-1] == ':' && isDigit(str[lo-2]) && isDigit(str[lo-3])
}

// parse reads the chunk starting at i and returns where it ends.
func (ch *chunk) parse(str string, i int) int {
	ch.n, ch.plus, ch.digitCount = 0, str[i] == '+', 0
	j := i
	if ch.plus {
		j++
	}
	end := j
	var sep byte
	for ch.n < maxGroups {
		g := group{lo: j, sep: sep}
		if ch.n == 0 {
			g.lo = i
		}
		if str[j] == '(' {
			g.paren = true
			j++
		}
		g.start = j
		for j < len(str) && isDigit(str[j]) {
			j++
		}
		g.end = j
		if g.paren {
			if j >= len(str) || str[j] != ')' {
				break
			}
			j++
		}
		ch.g[ch.n] = g
		ch.n++
		ch.digitCount += g.end - g.start
		end = j
		k := j
		switch {
		case g.paren:
			sep = ')'
			if k < len(str) && (str[k] == ' ' || str[k] == '-') {
				k++
			}
		case k < len(str) && (str[k] == ' ' || str[k] == '-' || str[k] == '.'):
			sep = str[k]
			k++
		default:
			return end
		}
		if k >= len(str) || !isDigit(str[k]) && (str[k] != '(' || k+1 >= len(str) || !isDigit(str[k+1])) {
			return end
		}
		j = k
	}
	return end
}

// classify finds, detector by detector (card, SSN, IPv4, phone), the longest runs of
// unused groups each accepts.
func (s *Scrubber) classify(str string, ch *chunk, ms []match) []match {
	var used [maxGroups]bool
	g := ch.g[:ch.n]
	for _, kind := range [...]Kind{KindCard, KindSSN, KindIP, KindPhone} {
		if !s.on(kind) || !ch.enough(kind) {
			continue
		}
		for a := 0; a < len(g); a++ {
			if used[a] || a > 0 && g[a].sep != ' ' {
				continue
			}
			last := a
			for last+1 < len(g) && !used[last+1] {
				last++
			}
			for b := min(last, a+span(kind, a == 0 && ch.plus)); b >= a; b-- {
				if g[b].paren || (b+1 < len(g) && g[b+1].sep != ' ') ||
					(b+1 == len(g) && g[b].end < len(str) && isWord(str[g[b].end])) {
					continue
				}
				if accepts(kind, str, ch, a, b) {
					start := g[a].lo
					if a == 0 && ch.plus && kind != KindPhone {
						start = g[a].start
					}
					ms = append(ms, match{start: start, end: g[b].end, kind: kind})
					for u := a; u <= b; u++ {
						used[u] = true
					}
					a = b
					break
				}
			}
		}
	}
	return ms
}

// span returns how many groups a value of kind can have after its first: a card 4 (19
// digits in fours), an SSN 2, an IPv4 address 3, a phone number led by '+' 14 (E.164, a
// digit a group) and else 4 (1 415 555 2671, 01 23 45 67 89).
func span(kind Kind, plus bool) int {
	switch {
	case kind == KindCard:
		return 4
	case kind == KindSSN:
		return 2
	case kind == KindIP:
		return 3
	case plus:
		return 14
	}
	return 4
}

// enough reports whether the chunk has enough digits and groups to hold a value of kind.
func (ch *chunk) enough(kind Kind) bool {
	switch kind {
	case KindCard:
		return ch.digitCount >= 13
	case KindSSN:
		return ch.digitCount >= 9 && ch.n >= 3
	case KindIP:
		return ch.n >= 4
	}
	return ch.digitCount >= 8
}

// accepts reports whether groups a..b of ch are a value of kind.
func accepts(kind Kind, str string, ch *chunk, a, b int) bool {
	switch kind {
	case KindCard:
		return isCard(str, ch, a, b)
	case KindSSN:
		return isSSN(str, ch, a, b)
	case KindIP:
		return isIPv4(str, ch, a, b)
	}
	return isPhone(str, ch, a, b)
}

// digits copies the digits of groups a..b into buf; false if they do not fit or a group is
// parenthesised.
func (ch *chunk) digits(str string, a, b int, buf []byte) ([]byte, bool) {
	out := buf[:0]
	for i := a; i <= b; i++ {
		g := ch.g[i]
		if g.paren || len(out)+g.end-g.start > cap(buf) {
			return nil, false
		}
		out = append(out, str[g.start:g.end]...)
	}
	return out, true
}

// sameSep returns the separator between groups a..b if it is the same everywhere (0 for a
// single group), and whether it is.
func (ch *chunk) sameSep(a, b int) (byte, bool) {
	if a == b {
		return 0, true
	}
	sep := ch.g[a+1].sep
	for i := a + 2; i <= b; i++ {
		if ch.g[i].sep != sep {
			return 0, false
		}
	}
	return sep, true
}

func (ch *chunk) size(i int) int { return ch.g[i].end - ch.g[i].start }

// isCard: 13-19 digits, plain or in groups of four (Amex 4-6-5, Diners 4-6-4) separated by
// spaces or dashes, a known network prefix, a valid Luhn check digit.
func isCard(str string, ch *chunk, a, b int) bool {
	if a == 0 && ch.plus {
		return false
	}
	var buf [19]byte
	d, ok := ch.digits(str, a, b, buf[:])
	if !ok || len(d) < 13 {
		return false
	}
	if sep, ok := ch.sameSep(a, b); !ok || (sep != 0 && sep != ' ' && sep != '-') {
		return false
	}
	if b > a {
		fours := true
		for i := a; i < b; i++ {
			fours = fours && ch.size(i) == 4
		}
		amex := b-a == 2 && ch.size(a) == 4 && ch.size(a+1) == 6 && (ch.size(b) == 5 || ch.size(b) == 4)
		if !(fours && ch.size(b) <= 4) && !amex {
			return false
		}
	}
	return cardPrefix(d) && luhn(d)
}

// cardPrefix reports whether the number's prefix and length are those of a card network:
// UATP, Mastercard, Amex, Diners, JCB, Visa, Maestro, Discover, UnionPay.
func cardPrefix(d []byte) bool {
	n := len(d)
	p2 := int(d[0]-'0')*10 + int(d[1]-'0')
	p4 := p2*100 + int(d[2]-'0')*10 + int(d[3]-'0')
	switch d[0] {
	case '1':
		return n == 15
	case '2':
		return n == 16 && p4 >= 2221 && p4 <= 2720
	case '3':
		switch {
		case p2 == 34 || p2 == 37:
			return n == 15
		case p2 == 36 || p2 == 38 || p2 == 39 || p4 >= 3000 && p4 <= 3059:
			return n >= 14
		case p4 >= 3528 && p4 <= 3589:
			return n >= 16
		}
		return false
	case '4':
		return n == 13 || n == 16 || n == 19
	case '5':
		if p2 >= 51 && p2 <= 55 {
			return n == 16
		}
		return p2 == 50 || p2 >= 56
	case '6':
		return true
	}
	return false
}

func luhn(d []byte) bool {
	sum := 0
	for i := len(d) - 1; i >= 0; i-- {
		v := int(d[i] - '0')
		if (len(d)-i)%2 == 0 {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		sum += v
	}
	return sum%10 == 0
}

// isSSN: AAA-GG-SSSS or AAA GG SSSS, area not 000, 666 or 9xx, group not 00, serial not
// 0000.
func isSSN(str string, ch *chunk, a, b int) bool {
	if b-a != 2 || (a == 0 && ch.plus) || ch.size(a) != 3 || ch.size(a+1) != 2 || ch.size(b) != 4 {
		return false
	}
	if sep, ok := ch.sameSep(a, b); !ok || (sep != '-' && sep != ' ') {
		return false
	}
	var buf [9]byte
	d, ok := ch.digits(str, a, b, buf[:])
	if !ok {
		return false
	}
	area := string(d[:3])
	return area != "000" && area != "666" && d[0] != '9' && string(d[3:5]) != "00" && string(d[5:]) != "0000"
}

// isIPv4: four dotted decimal octets, not a loopback (127/8) or unspecified (0.0.0.0)
// address, nor a product version (Chrome/131.0.0.0).
func isIPv4(str string, ch *chunk, a, b int) bool {
	if b-a != 3 || (a == 0 && ch.plus) || productVersion(str, ch.g[a].lo) {
		return false
	}
	if first := str[ch.g[a].start:ch.g[a].end]; first == "127" || first == "0" && str[ch.g[a].start:ch.g[b].end] == "0.0.0.0" {
		return false
	}
	if sep, ok := ch.sameSep(a, b); !ok || sep != '.' {
		return false
	}
	for i := a; i <= b; i++ {
		g := ch.g[i]
		if g.paren || g.end-g.start > 3 {
			return false
		}
		v := 0
		for _, c := range []byte(str[g.start:g.end]) {
			v = v*10 + int(c-'0')
		}
		if v > 255 {
			return false
		}
	}
	return true
}

// productVersion reports whether the number at str[lo] is a product's version: it follows
// "Product/", a word with a letter that starts the text or follows a space, '(' , ';' or
// ',' (Chrome/131.0.0.0, but not /v1.2/10.0.0.1 or /api/10.0.0.1).
func productVersion(str string, lo int) bool {
	if lo < 2 || str[lo-1] != '/' {
		return false
	}
	p, letter := lo-1, false
	for p > 0 && (isWord(str[p-1]) || str[p-1] == '-') {
		p--
		letter = letter || class[str[p]]&(cUpper|cLower) != 0
	}
	if !letter || p == lo-1 {
		return false
	}
	switch {
	case p == 0:
		return true
	case str[p-1] == ' ' || str[p-1] == '(' || str[p-1] == ';' || str[p-1] == ',' || str[p-1] == '"':
		return true
	}
	return false
}

// isPhone: E.164 (+, 8 to 15 digits, any separators, a country code of 1-3 digits when
// grouped); North American 3-3-4 with an optional leading 1; national with a trunk 0, 9 to
// 11 digits in groups of at least two.
func isPhone(str string, ch *chunk, a, b int) bool {
	if clock(str, ch.g[a].lo) {
		return false
	}
	if a == 0 && ch.plus {
		n := 0
		for i := a; i <= b; i++ {
			n += ch.size(i)
		}
		return n >= 8 && n <= 15 && (a == b || ch.size(a) <= 3)
	}
	if ch.g[a].paren && (b-a != 2) {
		return false
	}
	return isNANP(str, ch, a, b) || isTrunk(str, ch, a, b)
}

// isNANP: (415) 555-2671, 415-555-2671, 415.555.2671, 415 555 2671, and those led by "1 "
// or "1-"; area code and exchange start with 2-9.
func isNANP(str string, ch *chunk, a, b int) bool {
	if b-a == 3 && ch.size(a) == 1 && str[ch.g[a].start] == '1' && !ch.g[a].paren &&
		(ch.g[a+1].sep == ' ' || ch.g[a+1].sep == '-') {
		a++
	}
	if b-a != 2 || ch.size(a) != 3 || ch.size(a+1) != 3 || ch.size(b) != 4 ||
		ch.g[a+1].paren || ch.g[b].paren || str[ch.g[a].start] < '2' || str[ch.g[a+1].start] < '2' {
		return false
	}
	s1, s2 := ch.g[a+1].sep, ch.g[b].sep
	if ch.g[a].paren {
		return s1 == ')' && (s2 == '-' || s2 == ' ')
	}
	return s1 == s2 && s1 != ')'
}

// isTrunk: national numbers with a trunk 0: 020 7946 0958, 030-12345678, 01 23 45 67 89,
// 07911123456 (plain: 10 or 11 digits); not a ZIP+4 code (01253-6409).
func isTrunk(str string, ch *chunk, a, b int) bool {
	var buf [11]byte
	d, ok := ch.digits(str, a, b, buf[:])
	if !ok || len(d) < 9 || d[0] != '0' || d[1] == '0' || (a == b && len(d) < 10) {
		return false
	}
	sep, ok := ch.sameSep(a, b)
	if !ok || sep == ')' || b == a+1 && sep == '-' && ch.size(a) == 5 && ch.size(b) == 4 { // ZIP+4
		return false
	}
	for i := a; i <= b; i++ {
		if ch.size(i) < 2 {
			return false
		}
	}
	return true
}
