package pii

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"go.uber.org/zap/zapcore"
)

// The scrubbing of zap fields that the edge's log encoder (modules/piiscrub) and the app
// server's core (appserver/logscrub) share. They differ in how they reach nested values
// (encoder wrappers on the edge, JSON documents in the app server); the scalars, and
// reflected values as JSON, are scrubbed here.

// cardDigits: integers of this magnitude or more can be phone or card numbers.
const cardDigits = 1e7

// ZapField replaces the personal data of *f, and reports true, for the fields that hold
// scalars: strings and byte strings go through Field with the key (byte strings become
// strings); integers through ZapInt (those replaced become strings); errors keep their
// type with the scrubbed message (losing their verbose form and causes); stringers become
// strings; other scalars (bools, floats, durations, times, ...) become their text when the
// field is replaced whole. Objects, arrays, reflected and inline values, which the caller
// scrubs as it encodes them (JSONValue helps), it leaves alone and reports false.
func (s *Scrubber) ZapField(f *zapcore.Field) bool {
	switch f.Type {
	case zapcore.ObjectMarshalerType, zapcore.InlineMarshalerType, zapcore.ArrayMarshalerType, zapcore.ReflectType:
		return false
	case zapcore.StringType:
		f.String = s.Field(f.Key, f.String)
	case zapcore.ByteStringType:
		*f = zapcore.Field{Key: f.Key, Type: zapcore.StringType, String: s.Field(f.Key, string(f.Interface.([]byte)))}
	case zapcore.Int64Type, zapcore.Int32Type, zapcore.Int16Type, zapcore.Int8Type:
		if t, ok := s.ZapInt(f.Key, f.Integer, false); ok {
			*f = zapcore.Field{Key: f.Key, Type: zapcore.StringType, String: t}
		}
	case zapcore.Uint64Type, zapcore.Uint32Type, zapcore.Uint16Type, zapcore.Uint8Type, zapcore.UintptrType:
		if t, ok := s.ZapInt(f.Key, f.Integer, true); ok {
			*f = zapcore.Field{Key: f.Key, Type: zapcore.StringType, String: t}
		}
	case zapcore.ErrorType:
		if err, ok := f.Interface.(error); ok && err != nil {
			f.Interface = errors.New(s.Field(f.Key, err.Error()))
		}
	case zapcore.StringerType:
		*f = zapcore.Field{Key: f.Key, Type: zapcore.StringType, String: s.Field(f.Key, stringer(f.Interface))}
	case zapcore.SkipType, zapcore.NamespaceType:
	default:
		if _, whole := s.FieldKind(f.Key); whole {
			enc := zapcore.NewMapObjectEncoder()
			f.AddTo(enc)
			*f = zapcore.Field{Key: f.Key, Type: zapcore.StringType, String: s.Field(f.Key, fmt.Sprint(enc.Fields[f.Key]))}
		}
	}
	return true
}

// ZapInt returns the scrubbed text of an integer n, the value of the field key (unsigned
// says how to read n), and whether it must replace the integer: it does when the field is
// replaced whole, or when the integer is long enough to be a card or phone number and is
// one.
func (s *Scrubber) ZapInt(key string, n int64, unsigned bool) (string, bool) {
	small := n < cardDigits && n > -cardDigits
	if unsigned {
		small = uint64(n) < cardDigits
	}
	if small {
		if _, whole := s.FieldKind(key); !whole {
			return "", false
		}
	}
	text := strconv.FormatInt(n, 10)
	if unsigned {
		text = strconv.FormatUint(uint64(n), 10)
	}
	t := s.Field(key, text)
	return t, t != text
}

// JSONValue returns v, the value of the field key, as a scrubbed JSON document
// (json.RawMessage), or v itself when it holds nothing to scrub; the key's own rules apply
// (a field replaced whole has all its strings and numbers replaced).
func (s *Scrubber) JSONValue(key string, v any) (any, error) {
	doc, err := json.Marshal(map[string]any{key: v})
	if err != nil {
		return nil, err
	}
	out, err := s.JSON(doc)
	if err != nil {
		return nil, err
	}
	if &out[0] == &doc[0] {
		return v, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(out, &m); err != nil {
		return nil, err
	}
	for _, raw := range m {
		return raw, nil
	}
	return nil, errors.New("pii: no value")
}

// stringer calls String as zap would: "<nil>" for nil, the panic as text.
func stringer(v any) (str string) {
	defer func() {
		if r := recover(); r != nil {
			str = "PANIC=" + strconv.Quote(fmt.Sprint(r))
		}
	}()
	if v == nil {
		return "<nil>"
	}
	return v.(fmt.Stringer).String()
}
