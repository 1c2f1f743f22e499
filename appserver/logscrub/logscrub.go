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
	"fmt"
	"slices"

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

// field appends the scrubbed form of f to out: scalars as pii.Scrubber.ZapField has them,
// the rest as JSON (encoded).
func (c *core) field(f zapcore.Field, out []zapcore.Field) []zapcore.Field {
	if c.s.ZapField(&f) {
		return append(out, f)
	}
	return c.encoded(f, out)
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
		v, err := c.s.JSONValue(k, enc.Fields[k])
		if err != nil {
			out = append(out, zapcore.Field{Key: k + "Error", Type: zapcore.StringType,
				String: c.s.String(fmt.Sprintf("cannot log %s: %v", k, err))})
			continue
		}
		out = append(out, zapcore.Field{Key: c.s.String(k), Type: zapcore.ReflectType, Interface: v})
	}
	return out
}
