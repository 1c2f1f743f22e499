package piiscrub

import (
	"fmt"
	"sync"

	"go.uber.org/zap/buffer"
	"go.uber.org/zap/zapcore"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/muejam/edge/internal/pii"
)

// fieldEncoder scrubs the message, stack trace and fields of an entry before the wrapped
// encoder (json, console, filter, ...) sees them: strings go through pii.Scrubber.Field with
// their key, objects and arrays through encoders that scrub what their marshalers add (keys
// of objects and arrays included: header names come from clients), reflected values as
// JSON documents, integers long enough to be card or phone numbers as text. Context fields
// (With) are scrubbed as they are added.
//
// Caddy's request and header objects get marshalers of their own (caddytypes.go) instead
// of wrappers. Measured against scrubbing the encoded JSON line with pii.JSON, the wrapper
// alone was 1.45 times as fast on a clean access-log entry: it scans only the strings,
// once, and the wrapped encoder's output needs no second parse and validation.
type fieldEncoder struct {
	objectEncoder
	enc zapcore.Encoder

	// req is the child that marshals a request added as a context field: Caddy's access
	// logger clones the encoder for every request to add it (WithLazy), and a child
	// allocated with the clone costs one allocation fewer.
	req requestMarshaler
}

// newFieldEncoder returns a fieldEncoder over enc.
func newFieldEncoder(enc zapcore.Encoder, s *pii.Scrubber) *fieldEncoder {
	e := &fieldEncoder{objectEncoder: objectEncoder{ObjectEncoder: enc, s: s}, enc: enc}
	e.children.req = &e.req
	return e
}

// Clone clones the wrapped encoder.
func (e *fieldEncoder) Clone() zapcore.Encoder {
	return newFieldEncoder(e.enc.Clone(), e.s)
}

// EncodeEntry scrubs the message, the stack trace and the fields, then encodes them with the
// wrapped encoder.
func (e *fieldEncoder) EncodeEntry(ent zapcore.Entry, fields []zapcore.Field) (*buffer.Buffer, error) {
	ent.Message = e.s.String(ent.Message)
	ent.Stack = e.s.String(ent.Stack)
	st := entryPool.Get().(*entryState)
	defer st.free()
	for _, f := range fields {
		// Objects and arrays get wrappers of the entry's state instead of new ones.
		switch f.Type {
		case zapcore.ObjectMarshalerType, zapcore.InlineMarshalerType:
			f.Interface = st.objectFor(f.Interface.(zapcore.ObjectMarshaler), e.s)
		case zapcore.ArrayMarshalerType:
			f.Interface = st.array(f.Interface.(zapcore.ArrayMarshaler), f.Key, e.s)
		case zapcore.ReflectType:
			f.Interface = scrubReflected(e.s, f.Key, f.Interface)
		default:
			e.s.ZapField(&f)
		}
		st.fields = append(st.fields, f)
	}
	return e.enc.EncodeEntry(ent, st.fields)
}

// entryState is what EncodeEntry reuses from entry to entry: the scrubbed fields and the
// wrappers (or marshalers) of their objects and arrays. Encoders marshal objects and
// arrays while they are added and keep no reference to the fields once the entry is
// encoded.
type entryState struct {
	fields []zapcore.Field
	objs   slab[objectEncoder]
	arrs   slab[arrayEncoder]
	reqs   slab[requestMarshaler]
	hdrs   slab[headerMarshaler]
}

// slab hands out reusable values of T, each until reset.
type slab[T any] struct {
	items []*T
	n     int
}

// next returns a value of T, unused since the last reset.
func (s *slab[T]) next() *T {
	if s.n == len(s.items) {
		s.items = append(s.items, new(T))
	}
	t := s.items[s.n]
	s.n++
	return t
}

// reset makes every value available again, after done has cleared each one used.
func (s *slab[T]) reset(done func(*T)) {
	for _, t := range s.items[:s.n] {
		done(t)
	}
	s.n = 0
}

// objectFor returns what scrubs the values m adds to an object, valid until free.
func (st *entryState) objectFor(m zapcore.ObjectMarshaler, s *pii.Scrubber) zapcore.ObjectMarshaler {
	switch v := m.(type) {
	case caddyhttp.LoggableHTTPRequest:
		r := st.reqs.next()
		r.r, r.s = v, s
		return r
	case caddyhttp.LoggableHTTPHeader:
		h := st.hdrs.next()
		h.h, h.s = v, s
		return h
	}
	o := st.objs.next()
	o.m, o.s = m, s
	return o
}

// array returns a wrapper scrubbing what m appends as values of the field key, valid
// until free.
func (st *entryState) array(m zapcore.ArrayMarshaler, key string, s *pii.Scrubber) *arrayEncoder {
	a := st.arrs.next()
	a.m, a.key, a.s = m, key, s
	return a
}

// free clears the state and returns it to its pool; the wrappers keep their children.
func (st *entryState) free() {
	clear(st.fields)
	st.fields = st.fields[:0]
	st.objs.reset((*objectEncoder).done)
	st.arrs.reset((*arrayEncoder).done)
	st.reqs.reset((*requestMarshaler).done)
	st.hdrs.reset((*headerMarshaler).done)
	entryPool.Put(st)
}

// The states of entries are reused, and with them the wrappers of their objects and
// arrays, nested ones included. (Top-level wrappers that a field filter hands back to
// Caddy's filter encoder are not.)
var entryPool = sync.Pool{New: func() any { return &entryState{fields: make([]zapcore.Field, 0, 16)} }}

// children holds the wrappers of a wrapper's nested objects and arrays. An encoder
// marshals a nested object or array before AddObject, AddArray, AppendObject or
// AppendArray returns, so one child of each sort serves every nested value of a wrapper
// in turn; a child is busy (its marshaler set) only during that call, and a marshaler
// that adds to its parent meanwhile gets a new child.
type children struct {
	obj *objectEncoder
	arr *arrayEncoder
	req *requestMarshaler
	hdr *headerMarshaler
}

// object returns the child wrapper scrubbing what m adds; done releases it.
func (c *children) object(m zapcore.ObjectMarshaler, s *pii.Scrubber) *objectEncoder {
	w := c.obj
	if w == nil || w.m != nil {
		w = new(objectEncoder)
		if c.obj == nil {
			c.obj = w
		}
	}
	w.m, w.s = m, s
	return w
}

// done releases a child object wrapper.
func (o *objectEncoder) done() { o.m, o.ObjectEncoder = nil, nil }

// array returns the child wrapper scrubbing what m appends as values of the field key;
// done releases it.
func (c *children) array(m zapcore.ArrayMarshaler, key string, s *pii.Scrubber) *arrayEncoder {
	w := c.arr
	if w == nil || w.m != nil {
		w = new(arrayEncoder)
		if c.arr == nil {
			c.arr = w
		}
	}
	w.m, w.key, w.s = m, key, s
	return w
}

// done releases a child array wrapper.
func (a *arrayEncoder) done() { a.m, a.ArrayEncoder = nil, nil }

// scrubField returns f with its personal data replaced: scalars as pii.Scrubber.ZapField
// has them, objects and arrays through wrappers, reflected values as JSON documents.
func scrubField(s *pii.Scrubber, f zapcore.Field) zapcore.Field {
	if s.ZapField(&f) {
		return f
	}
	switch f.Type {
	case zapcore.ObjectMarshalerType, zapcore.InlineMarshalerType:
		f.Interface = newObjectFor(f.Interface.(zapcore.ObjectMarshaler), s)
	case zapcore.ArrayMarshalerType:
		f.Interface = &arrayEncoder{m: f.Interface.(zapcore.ArrayMarshaler), key: f.Key, s: s}
	case zapcore.ReflectType:
		f.Interface = scrubReflected(s, f.Key, f.Interface)
	}
	return f
}

// scrubReflected returns v as a scrubbed JSON document, or v itself when it holds nothing
// to scrub; a value that cannot be encoded is replaced by the error.
func scrubReflected(s *pii.Scrubber, key string, v any) any {
	out, err := s.JSONValue(key, v)
	if err != nil {
		return fmt.Sprintf("cannot log %s: %v", key, err)
	}
	return out
}

// objectEncoder scrubs every value a marshaler adds to an object; it is the marshaler's
// wrapper too, so that each nested object costs one allocation.
type objectEncoder struct {
	zapcore.ObjectEncoder
	m zapcore.ObjectMarshaler
	s *pii.Scrubber
	children
}

// MarshalLogObject marshals the wrapped marshaler's object into enc, scrubbing it.
func (o *objectEncoder) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	o.ObjectEncoder = enc
	return o.m.MarshalLogObject(o)
}

// AddString scrubs value as the value of field key.
func (o *objectEncoder) AddString(key, value string) {
	o.ObjectEncoder.AddString(key, o.s.Field(key, value))
}

// AddByteString scrubs value as the value of field key.
func (o *objectEncoder) AddByteString(key string, value []byte) {
	o.ObjectEncoder.AddString(key, o.s.Field(key, string(value)))
}

// AddObject scrubs the key (it can come from a client, as a header name does) and what the
// marshaler adds.
func (o *objectEncoder) AddObject(key string, m zapcore.ObjectMarshaler) error {
	w := o.objectFor(m, o.s)
	defer w.done()
	return o.ObjectEncoder.AddObject(o.s.String(key), w)
}

// AddArray scrubs the key (it can come from a client, as a header name does) and what the
// marshaler appends.
func (o *objectEncoder) AddArray(key string, m zapcore.ArrayMarshaler) error {
	w := o.array(m, key, o.s)
	defer w.done()
	return o.ObjectEncoder.AddArray(o.s.String(key), w)
}

// AddReflected scrubs the value as a JSON document.
func (o *objectEncoder) AddReflected(key string, value any) error {
	return o.ObjectEncoder.AddReflected(key, scrubReflected(o.s, key, value))
}

// AddInt64 replaces an integer that is personal data.
func (o *objectEncoder) AddInt64(key string, value int64) {
	if t, ok := o.s.ZapInt(key, value, false); ok {
		o.ObjectEncoder.AddString(key, t)
		return
	}
	o.ObjectEncoder.AddInt64(key, value)
}

// AddInt replaces an integer that is personal data.
func (o *objectEncoder) AddInt(key string, value int) { o.AddInt64(key, int64(value)) }

// AddInt32 replaces an integer that is personal data.
func (o *objectEncoder) AddInt32(key string, value int32) { o.AddInt64(key, int64(value)) }

// AddUint64 replaces an integer that is personal data.
func (o *objectEncoder) AddUint64(key string, value uint64) {
	if t, ok := o.s.ZapInt(key, int64(value), true); ok {
		o.ObjectEncoder.AddString(key, t)
		return
	}
	o.ObjectEncoder.AddUint64(key, value)
}

// AddUint replaces an integer that is personal data.
func (o *objectEncoder) AddUint(key string, value uint) { o.AddUint64(key, uint64(value)) }

// AddUint32 replaces an integer that is personal data.
func (o *objectEncoder) AddUint32(key string, value uint32) { o.AddUint64(key, uint64(value)) }

// arrayEncoder scrubs every element a marshaler appends to an array, as values of the
// field key (so that a sensitive header's values are replaced whole); it is the
// marshaler's wrapper too.
type arrayEncoder struct {
	zapcore.ArrayEncoder
	m   zapcore.ArrayMarshaler
	key string
	s   *pii.Scrubber
	children
}

// MarshalLogArray marshals the wrapped marshaler's array into enc, scrubbing it.
func (a *arrayEncoder) MarshalLogArray(enc zapcore.ArrayEncoder) error {
	a.ArrayEncoder = enc
	return a.m.MarshalLogArray(a)
}

// AppendString scrubs v as a value of the array's field.
func (a *arrayEncoder) AppendString(v string) { a.ArrayEncoder.AppendString(a.s.Field(a.key, v)) }

// AppendByteString scrubs v as a value of the array's field.
func (a *arrayEncoder) AppendByteString(v []byte) {
	a.ArrayEncoder.AppendString(a.s.Field(a.key, string(v)))
}

// AppendObject scrubs what the marshaler adds.
func (a *arrayEncoder) AppendObject(m zapcore.ObjectMarshaler) error {
	w := a.objectFor(m, a.s)
	defer w.done()
	return a.ArrayEncoder.AppendObject(w)
}

// AppendArray scrubs what the marshaler appends.
func (a *arrayEncoder) AppendArray(m zapcore.ArrayMarshaler) error {
	w := a.array(m, a.key, a.s)
	defer w.done()
	return a.ArrayEncoder.AppendArray(w)
}

// AppendReflected scrubs the value as a JSON document.
func (a *arrayEncoder) AppendReflected(v any) error {
	return a.ArrayEncoder.AppendReflected(scrubReflected(a.s, a.key, v))
}

// AppendInt64 replaces an integer that is personal data.
func (a *arrayEncoder) AppendInt64(v int64) {
	if t, ok := a.s.ZapInt(a.key, v, false); ok {
		a.ArrayEncoder.AppendString(t)
		return
	}
	a.ArrayEncoder.AppendInt64(v)
}

// AppendInt replaces an integer that is personal data.
func (a *arrayEncoder) AppendInt(v int) { a.AppendInt64(int64(v)) }

// AppendUint64 replaces an integer that is personal data.
func (a *arrayEncoder) AppendUint64(v uint64) {
	if t, ok := a.s.ZapInt(a.key, int64(v), true); ok {
		a.ArrayEncoder.AppendString(t)
		return
	}
	a.ArrayEncoder.AppendUint64(v)
}

// Interface guards
var (
	_ zapcore.Encoder         = (*fieldEncoder)(nil)
	_ zapcore.ObjectEncoder   = (*objectEncoder)(nil)
	_ zapcore.ObjectMarshaler = (*objectEncoder)(nil)
	_ zapcore.ArrayEncoder    = (*arrayEncoder)(nil)
	_ zapcore.ArrayMarshaler  = (*arrayEncoder)(nil)
)
