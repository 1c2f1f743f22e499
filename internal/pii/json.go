package pii

import (
	"encoding/json"
	"errors"
	"unicode/utf8"
	"unsafe"
)

// ErrInvalidJSON is returned by JSON for a document that is not valid JSON.
var ErrInvalidJSON = errors.New("pii: invalid JSON")

// JSON scrubs a JSON document and returns a valid JSON document: every string (keys
// included) goes through String; the values under a key that Field replaces whole (a
// sensitive header, a PII field, a sensitive parameter) have every string and number
// replaced, keeping arrays and objects; under a phone key (phone, msisdn, ...) a bare
// number is a phone number, as Field has it; a number that holds personal data becomes a
// string.
// When nothing is replaced it returns doc itself without allocating. doc must not change
// during the call.
func (s *Scrubber) JSON(doc []byte) ([]byte, error) {
	if !json.Valid(doc) {
		return nil, ErrInvalidJSON
	}
	w := jsonWalker{s: s, in: doc}
	w.value(w.space(0), 0, false, "")
	if w.out == nil {
		return doc, nil
	}
	return append(w.out, doc[w.copied:]...), nil
}

// jsonWalker walks a valid JSON document, copying it to out from the first change on.
type jsonWalker struct {
	s      *Scrubber
	in     []byte
	out    []byte
	copied int // in[:copied] has been dealt with
}

// view returns b as a string without copying; it must not outlive the walk.
func view(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

func (w *jsonWalker) space(i int) int {
	for i < len(w.in) && (w.in[i] == ' ' || w.in[i] == '\t' || w.in[i] == '\n' || w.in[i] == '\r') {
		i++
	}
	return i
}

// value walks the value at i and returns the index after it; under a field replaced whole,
// its strings and numbers become the replacement of kind; under key, a phone name, those
// shaped as phone numbers are phone numbers.
func (w *jsonWalker) value(i int, kind Kind, whole bool, key string) int {
	switch c := w.in[i]; {
	case c == '{':
		i = w.space(i + 1)
		if w.in[i] == '}' {
			return i + 1
		}
		for {
			end := w.str(i)
			name := w.text(i, end)
			childKind, childWhole := kind, whole
			if !whole {
				childKind, childWhole = w.s.FieldKind(name)
			}
			if out, changed := w.s.scrub(name); changed {
				w.replace(i, end, out)
			}
			i = w.space(w.space(end) + 1) // past ':'
			i = w.space(w.value(i, childKind, childWhole, name))
			if w.in[i] == '}' {
				return i + 1
			}
			i = w.space(i + 1) // past ','
		}
	case c == '[':
		i = w.space(i + 1)
		if w.in[i] == ']' {
			return i + 1
		}
		for {
			i = w.space(w.value(i, kind, whole, key))
			if w.in[i] == ']' {
				return i + 1
			}
			i = w.space(i + 1)
		}
	case c == '"':
		end := w.str(i)
		w.leaf(i, end, w.text(i, end), kind, whole, key)
		return end
	case c == 't' || c == 'n':
		return i + 4
	case c == 'f':
		return i + 5
	default:
		end := i
		for end < len(w.in) && (isDigit(w.in[end]) || w.in[end] == '-' || w.in[end] == '+' ||
			w.in[end] == '.' || w.in[end]|0x20 == 'e') {
			end++
		}
		if whole || end-i >= 7 { // shorter numbers cannot hold personal data
			w.leaf(i, end, view(w.in[i:end]), kind, whole, key)
		}
		return end
	}
}

// leaf scrubs a string or number in[i:end] whose text is t, under key.
func (w *jsonWalker) leaf(i, end int, t string, kind Kind, whole bool, key string) {
	if !whole && w.s.on(KindPhone) && phoneShaped(t) && phoneName(key) {
		kind, whole = KindPhone, true
	}
	if whole {
		if t != "" {
			w.replace(i, end, w.s.whole(kind, t))
		}
		return
	}
	if out, changed := w.s.scrub(t); changed {
		w.replace(i, end, out)
	}
}

// str returns the index after the string starting at i.
func (w *jsonWalker) str(i int) int {
	for i++; w.in[i] != '"'; i++ {
		if w.in[i] == '\\' {
			i++
		}
	}
	return i + 1
}

// text returns the content of the string in[i:end], unescaped.
func (w *jsonWalker) text(i, end int) string {
	raw := w.in[i+1 : end-1]
	for _, c := range raw {
		if c == '\\' {
			var t string
			if err := json.Unmarshal(w.in[i:end], &t); err != nil {
				return view(raw) // cannot happen: the document is valid
			}
			return t
		}
	}
	return view(raw)
}

// replace writes the JSON string t in place of in[i:end].
func (w *jsonWalker) replace(i, end int, t string) {
	if w.out == nil {
		w.out = make([]byte, 0, len(w.in)+64)
	}
	w.out = append(w.out, w.in[w.copied:i]...)
	w.out = appendString(w.out, t)
	w.copied = end
}

// appendString appends t as a JSON string; invalid UTF-8 becomes U+FFFD.
func appendString(b []byte, t string) []byte {
	b = append(b, '"')
	for i := 0; i < len(t); {
		c := t[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20:
				b = append(b, `\u00`...)
				b = append(b, "0123456789abcdef"[c>>4], "0123456789abcdef"[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(t[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, t[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
