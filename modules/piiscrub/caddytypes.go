package piiscrub

import (
	"net"
	"strings"

	"go.uber.org/zap/zapcore"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/muejam/edge/internal/pii"
)

// Every access-log entry carries a caddyhttp.LoggableHTTPRequest and two
// caddyhttp.LoggableHTTPHeader objects, most of its strings. Wrapping the encoder that
// their marshalers write to costs two interface calls per string (the marshaler's into the
// wrapper, the wrapper's into the encoder), and Caddy's header marshaler allocates a
// lower-cased copy of every header name to find the four it redacts. For these types the
// scrubber marshals the values itself: the same fields in the same order, each string
// scrubbed on its way to the encoder, and the credentials Caddy redacts redacted the same
// way. TestCaddyMarshalersMatch compares the output with that of Caddy's own marshalers
// under the generic wrapper, so that a field Caddy adds in a later version fails the test
// instead of going unlogged.

// requestMarshaler writes what caddyhttp.LoggableHTTPRequest writes, scrubbed.
type requestMarshaler struct {
	r    caddyhttp.LoggableHTTPRequest
	s    *pii.Scrubber
	busy bool
	hdr  headerMarshaler
	children
}

// MarshalLogObject writes the request's fields to enc.
func (m *requestMarshaler) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	r, s := m.r, m.s
	ip, port, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		ip, port = r.RemoteAddr, ""
	}
	enc.AddString("remote_ip", s.Field("remote_ip", ip))
	enc.AddString("remote_port", s.Field("remote_port", port))
	if ip, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok {
		enc.AddString("client_ip", s.Field("client_ip", ip))
	}
	enc.AddString("proto", s.Field("proto", r.Proto))
	enc.AddString("method", s.Field("method", r.Method))
	enc.AddString("host", s.Field("host", r.Host))
	enc.AddString("uri", s.Field("uri", r.RequestURI))
	m.hdr.h = caddyhttp.LoggableHTTPHeader{Header: r.Header, ShouldLogCredentials: r.ShouldLogCredentials}
	m.hdr.s = s
	err = enc.AddObject("headers", &m.hdr)
	m.hdr.done()
	if err != nil {
		return err
	}
	if r.TransferEncoding != nil {
		w := m.array(caddyhttp.LoggableStringArray(r.TransferEncoding), "transfer_encoding", s)
		err = enc.AddArray("transfer_encoding", w)
		w.done()
		if err != nil {
			return err
		}
	}
	if r.TLS != nil {
		w := m.object(caddyhttp.LoggableTLSConnState(*r.TLS), s)
		err = enc.AddObject("tls", w)
		w.done()
	}
	return err
}

// done releases the marshaler.
func (m *requestMarshaler) done() { m.r, m.busy = caddyhttp.LoggableHTTPRequest{}, false }

// headerMarshaler writes what caddyhttp.LoggableHTTPHeader writes, scrubbed: each header
// name through String (it comes from the client), each value through Field with its name.
type headerMarshaler struct {
	h      caddyhttp.LoggableHTTPHeader
	s      *pii.Scrubber
	busy   bool
	values valuesMarshaler
}

// MarshalLogObject writes one array of values per header to enc.
func (m *headerMarshaler) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	m.values.s = m.s
	for name, vals := range m.h.Header {
		if !m.h.ShouldLogCredentials && caddyRedacts(name) {
			vals = redactedByCaddy
		}
		m.values.name, m.values.vals = name, vals
		if err := enc.AddArray(m.s.String(name), &m.values); err != nil {
			return err
		}
	}
	m.values.vals = nil
	return nil
}

// done releases the marshaler.
func (m *headerMarshaler) done() { m.h, m.busy = caddyhttp.LoggableHTTPHeader{}, false }

// redactedByCaddy is what Caddy's header marshaler writes for the values of the headers it
// redacts (caddyRedacts) unless credentials are logged.
var redactedByCaddy = []string{"REDACTED"}

// caddyRedacts reports whether Caddy's header marshaler redacts the header name.
func caddyRedacts(name string) bool {
	switch len(name) {
	case len("cookie"):
		return strings.EqualFold(name, "cookie")
	case len("set-cookie"):
		return strings.EqualFold(name, "set-cookie")
	case len("authorization"):
		return strings.EqualFold(name, "authorization")
	case len("proxy-authorization"):
		return strings.EqualFold(name, "proxy-authorization")
	}
	return false
}

// valuesMarshaler appends the values of a header, each scrubbed as a value of the header.
type valuesMarshaler struct {
	name string
	vals []string
	s    *pii.Scrubber
}

// MarshalLogArray appends the values to enc.
func (m *valuesMarshaler) MarshalLogArray(enc zapcore.ArrayEncoder) error {
	for _, v := range m.vals {
		enc.AppendString(m.s.Field(m.name, v))
	}
	return nil
}

// scrubbingObject is what scrubs the values an object marshaler adds: a wrapper of the
// marshaler, or a marshaler of Caddy's own of the same values. done releases it.
type scrubbingObject interface {
	zapcore.ObjectMarshaler
	done()
}

// objectFor returns the child that scrubs what m adds to an object, valid until its done.
func (c *children) objectFor(m zapcore.ObjectMarshaler, s *pii.Scrubber) scrubbingObject {
	switch v := m.(type) {
	case caddyhttp.LoggableHTTPRequest:
		w := c.req
		if w == nil || w.busy {
			w = new(requestMarshaler)
			if c.req == nil {
				c.req = w
			}
		}
		w.r, w.s, w.busy = v, s, true
		return w
	case caddyhttp.LoggableHTTPHeader:
		w := c.hdr
		if w == nil || w.busy {
			w = new(headerMarshaler)
			if c.hdr == nil {
				c.hdr = w
			}
		}
		w.h, w.s, w.busy = v, s, true
		return w
	}
	return c.object(m, s)
}

// newObjectFor returns a new marshaler scrubbing what m adds, for a field whose encoding
// happens later.
func newObjectFor(m zapcore.ObjectMarshaler, s *pii.Scrubber) zapcore.ObjectMarshaler {
	switch v := m.(type) {
	case caddyhttp.LoggableHTTPRequest:
		return &requestMarshaler{r: v, s: s}
	case caddyhttp.LoggableHTTPHeader:
		return &headerMarshaler{h: v, s: s}
	}
	return &objectEncoder{m: m, s: s}
}

// Interface guards
var (
	_ scrubbingObject        = (*requestMarshaler)(nil)
	_ scrubbingObject        = (*headerMarshaler)(nil)
	_ scrubbingObject        = (*objectEncoder)(nil)
	_ zapcore.ArrayMarshaler = (*valuesMarshaler)(nil)
)
