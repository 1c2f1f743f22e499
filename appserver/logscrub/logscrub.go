// Package logscrub wraps a zapcore.Core so that no personal data reaches the app server's
// log lines: messages, stack traces and fields go through the same pii.Scrubber as the
// edge's access logs.
//
// Strings, byte strings, errors and stringers are scrubbed as text; objects, arrays and
// reflected values are encoded to JSON and scrubbed as a JSON document (and logged as that
// JSON); an integer long enough to be a card or phone number becomes a string when it is
// one. A field named as a sensitive header, PII field or sensitive parameter is replaced
// whole, whatever its type. Errors lose their verbose form (errorVerbose) and causes.
//
// The wrapper decides with Enabled, not with the wrapped core's Check: put samplers
// around it (zap.WrapCore), not inside it.
package logscrub

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"go.uber.org/zap/zapcore"

	"github.com/muejam/edge/internal/pii"
)

// Wrap returns a core that scrubs every entry with s before handing it to c.
func Wrap(c zapcore.Core, s *pii.Scrubber) zapcore.Core {
	return &core{Core: c, s: s}
}

type core struct {
	zapcore.Core
	s *pii.Scrubber
}

// With scrubs the context fields once, when they are added.
func (c *core) With(fields []zapcore.Field) zapcore.Core {
	return &core{Core: c.Core.With(c.fields(fields)), s: c.s}
}

// Check adds this core, so that Write scrubs the entry.
func (c *core) Check(ent zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(ent.Level) {
		return ce.AddCore(ent, c)
	}
	return ce
}

// Write scrubs the message, the stack trace and the fields.
func (c *core) Write(ent zapcore.Entry, fields []zapcore.Field) error {
	ent.Message = c.s.String(ent.Message)
	ent.Stack = c.s.String(ent.Stack)
	return c.Core.Write(ent, c.fields(fields))
}

// fields returns the scrubbed fields: fields itself when nothing changed, else a copy.
func (c *core) fields(fields []zapcore.Field) []zapcore.Field {
	var out []zapcore.Field
	for i, f := range fields {
		var buf [2]zapcore.Field
		res := c.field(f, buf[:0])
		if out == nil {
			if len(res) == 1 && res[0].Equals(f) {
				continue
			}
			out = append(make([]zapcore.Field, 0, len(fields)+len(res)), fields[:i]...)
		}
		out = append(out, res...)
	}
	if out == nil {
		return fields
	}
	return out
}

// cardDigits: integers of this magnitude or more can be phone or card numbers.
const cardDigits = 1e7

// field appends the scrubbed form of f to out.
func (c *core) field(f zapcore.Field, out []zapcore.Field) []zapcore.Field {
	switch f.Type {
	case zapcore.SkipType, zapcore.BoolType, zapcore.DurationType, zapcore.TimeType, zapcore.TimeFullType,
		zapcore.Float64Type, zapcore.Float32Type, zapcore.Complex128Type, zapcore.Complex64Type,
		zapcore.Uint8Type, zapcore.Int8Type, zapcore.Uint16Type, zapcore.Int16Type, zapcore.NamespaceType:
		if _, whole := c.s.FieldKind(f.Key); whole && f.Type != zapcore.SkipType && f.Type != zapcore.NamespaceType {
			return append(out, c.text(f.Key, fmt.Sprint(fieldValue(f))))
		}
		return append(out, f)
	case zapcore.StringType:
		return append(out, c.text(f.Key, f.String))
	case zapcore.ByteStringType:
		return append(out, c.text(f.Key, string(f.Interface.([]byte))))
	case zapcore.Int64Type, zapcore.Int32Type, zapcore.Uint64Type, zapcore.Uint32Type, zapcore.UintptrType:
		_, whole := c.s.FieldKind(f.Key)
		if !whole && (f.Integer < cardDigits && f.Integer > -cardDigits) {
			return append(out, f)
		}
		s := fmt.Sprint(fieldValue(f))
		if t := c.s.Field(f.Key, s); t != s {
			return append(out, zapcore.Field{Key: f.Key, Type: zapcore.StringType, String: t})
		}
		return append(out, f)
	case zapcore.ErrorType:
		err, _ := f.Interface.(error)
		if err == nil {
			return append(out, f)
		}
		return append(out, zapcore.Field{Key: f.Key, Type: zapcore.ErrorType,
			Interface: errors.New(c.s.Field(f.Key, err.Error()))})
	case zapcore.StringerType:
		return append(out, c.text(f.Key, stringer(f.Interface)))
	}
	return c.encoded(f, out)
}

// text returns a string field holding the scrubbed value.
func (c *core) text(key, value string) zapcore.Field {
	return zapcore.Field{Key: key, Type: zapcore.StringType, String: c.s.Field(key, value)}
}

// encoded appends objects, arrays, reflected and inline values as scrubbed JSON, one
// field per key they add.
func (c *core) encoded(f zapcore.Field, out []zapcore.Field) []zapcore.Field {
	enc := zapcore.NewMapObjectEncoder()
	f.AddTo(enc)
	keys := make([]string, 0, len(enc.Fields))
	for k := range enc.Fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		doc, err := json.Marshal(map[string]any{k: enc.Fields[k]})
		if err == nil {
			doc, err = c.s.JSON(doc)
		}
		var scrubbed map[string]json.RawMessage
		if err == nil {
			err = json.Unmarshal(doc, &scrubbed)
		}
		if err != nil || len(scrubbed) != 1 {
			out = append(out, c.text(k+"Error", fmt.Sprintf("cannot log %s: %v", k, err)))
			continue
		}
		for sk, v := range scrubbed {
			out = append(out, zapcore.Field{Key: sk, Type: zapcore.ReflectType, Interface: v})
		}
	}
	return out
}

// fieldValue returns the value of a scalar field.
func fieldValue(f zapcore.Field) any {
	enc := zapcore.NewMapObjectEncoder()
	f.AddTo(enc)
	return enc.Fields[f.Key]
}

// stringer calls String as zap would: "<nil>" for nil, the panic as text.
func stringer(v any) (s string) {
	defer func() {
		if r := recover(); r != nil {
			s = "PANIC=" + strconv.Quote(fmt.Sprint(r))
		}
	}()
	if v == nil {
		return "<nil>"
	}
	return v.(fmt.Stringer).String()
}
