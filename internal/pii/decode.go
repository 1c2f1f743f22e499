package pii

import (
	"strings"
	"sync"
)

// Values hide behind escapes: a query string percent-encodes '@', '+', ':' and spaces
// (%40, %2B, %3A, %20), a proxy encodes them again (%2540), and a JSON document nested in
// a string escapes its quotes and may write '@' or '.' as \u0040 or \u002e. The detectors
// judge the text with its escapes decoded, twice, and their matches are mapped back to the
// escaped text, so that the replacement covers the escaped value and nothing more.

// decoded is str with its escapes decoded: text, and pos mapping each byte of text back
// to str: text[i] came from str[pos[i]:pos[i+1]] (pos[len(text)] is len(str)).
type decoded struct {
	buf  []byte
	pos  []int32
	tmp  []byte
	tpos []int32
}

var decodedPool = sync.Pool{New: func() any { return new(decoded) }}

// hasEscape reports whether str holds a percent escape (%XX) or a JSON escape (\", \\,
// \/, \b, \f, \n, \r, \t, and \u00XX for the bytes of ASCII and Latin-1).
func hasEscape(str string) bool {
	for i := 0; i < len(str)-1; i++ {
		if escapeLen(str, i) > 0 {
			return true
		}
	}
	return false
}

// escapeLen returns the length of the escape at str[i], or 0.
func escapeLen(str string, i int) int {
	switch str[i] {
	case '%':
		if i+2 < len(str) && isHexDigit(str[i+1]) && isHexDigit(str[i+2]) {
			return 3
		}
	case '\\':
		if i+1 >= len(str) {
			return 0
		}
		switch str[i+1] {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			return 2
		case 'u':
			if i+5 < len(str) && isHexDigit(str[i+2]) && isHexDigit(str[i+3]) &&
				isHexDigit(str[i+4]) && isHexDigit(str[i+5]) && str[i+2] == '0' && str[i+3] == '0' {
				return 6 // \u00XX; other code points stay escaped
			}
		}
	}
	return 0
}

func isHexDigit(c byte) bool { return class[c]&cHex != 0 }

// hexVal returns the value of a hexadecimal digit.
func hexVal(c byte) byte { return byte(strings.IndexByte("0123456789abcdef", c|0x20)) }

// unescapeByte returns the byte that the escape str[i:i+n] stands for.
func unescapeByte(str string, i, n int) byte {
	switch n {
	case 3:
		return hexVal(str[i+1])<<4 | hexVal(str[i+2])
	case 6:
		return hexVal(str[i+4])<<4 | hexVal(str[i+5])
	}
	switch c := str[i+1]; c {
	case 'b':
		return '\b'
	case 'f':
		return '\f'
	case 'n':
		return '\n'
	case 'r':
		return '\r'
	case 't':
		return '\t'
	default:
		return c
	}
}

// decode decodes the escapes of str into d, twice when the first pass leaves escapes,
// and returns the decoded text; it is valid until d is released.
func (d *decoded) decode(str string) string {
	d.buf, d.pos = unescapeInto(d.buf[:0], d.pos[:0], str, nil)
	if once := view(d.buf); hasEscape(once) {
		d.tmp, d.tpos = unescapeInto(d.tmp[:0], d.tpos[:0], once, d.pos)
		d.buf, d.tmp, d.pos, d.tpos = d.tmp, d.buf, d.tpos, d.pos
	}
	return view(d.buf)
}

// dataByte reports whether c, percent-encoded, is data that would end a value if decoded
// ('&', '#', quotes, '<', '>'): it is decoded as a '*', which ends none (a password
// "Tr0ub4dor%26" stays whole).
func dataByte(c byte) bool {
	switch c {
	case '&', '#', '"', '\'', '<', '>':
		return true
	}
	return false
}

// unescapeInto appends str decoded to buf and the positions its bytes came from to pos;
// through maps positions in str to those of an earlier text (nil: none).
func unescapeInto(buf []byte, pos []int32, str string, through []int32) ([]byte, []int32) {
	at := func(i int) int32 {
		if through != nil {
			return through[i]
		}
		return int32(i)
	}
	for i := 0; i < len(str); {
		pos = append(pos, at(i))
		if n := escapeLen(str, i); n > 0 {
			c := unescapeByte(str, i, n)
			if n == 3 && dataByte(c) {
				c = '*'
			}
			buf = append(buf, c)
			i += n
			continue
		}
		buf = append(buf, str[i])
		i++
	}
	return buf, append(pos, at(len(str)))
}

// release returns d to its pool.
func (d *decoded) release() { decodedPool.Put(d) }

// unescape returns str with its escapes decoded (twice), for the masked and pseudonymous
// forms of a value.
func unescape(str string) string {
	if !hasEscape(str) {
		return str
	}
	d := decodedPool.Get().(*decoded)
	out := string([]byte(d.decode(str)))
	d.release()
	return out
}
