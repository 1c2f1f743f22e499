package piiscrub

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// TestCaddyMarshalersMatch checks that the scrubber's own marshalers of Caddy's request and
// header types write what Caddy's marshalers write through the generic wrapper: the same
// fields with the same scrubbed values, credentials logged or not, TLS and transfer
// encodings included.
func TestCaddyMarshalersMatch(t *testing.T) {
	withPII := func() *http.Request {
		r := httptest.NewRequest(http.MethodPost, "https://muejam.test/v1/login?email=alice%40example.com&token=abc123456", nil)
		r.RequestURI = "/v1/login?email=alice%40example.com&token=abc123456"
		r.RemoteAddr = "203.0.113.9:40000"
		r.Host = "203.0.113.50:8443"
		r.Header.Set("Authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNpZw")
		r.Header.Set("Cookie", "sessionid=s3cr3t")
		r.Header["Proxy-Authorization"] = []string{"Basic YWxpY2U6aHVudGVyMg==", "second"}
		r.Header["set-cookie"] = []string{"a=b"} // not canonical: Caddy compares case-insensitively
		r.Header.Set("X-Card", "4111 1111 1111 1111")
		r.Header["Alice@example.com"] = []string{"a header name with an email"}
		r.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0")
		r.TransferEncoding = []string{"chunked"}
		r.TLS = &tls.ConnectionState{Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256,
			NegotiatedProtocol: "h2", ServerName: "muejam.test", DidResume: true,
			PeerCertificates: []*x509.Certificate{{Subject: pkix.Name{CommonName: "bob@example.org"}, SerialNumber: big.NewInt(4111111111111111)}}}
		return r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: "198.51.100.7"}))
	}
	requests := map[string]*http.Request{
		"pii": withPII(),
		"clean": func() *http.Request {
			_, fields := cleanEntry()
			return fields[0].Interface.(caddyhttp.LoggableHTTPRequest).Request
		}(),
		"no port, no headers, no client_ip": func() *http.Request {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.RemoteAddr, r.Header = "@unix-socket", nil
			return r
		}(),
		"empty TLS": func() *http.Request {
			r := withPII()
			r.TLS = &tls.ConnectionState{}
			return r
		}(),
	}
	fe, f := matchEncoders(t)
	for name, r := range requests {
		for _, creds := range []bool{false, true} {
			if err := marshalersMatch(t, fe, f, r, creds); err != "" {
				t.Errorf("%s, credentials %v: %s", name, creds, err)
			}
		}
	}
}

// FuzzCaddyMarshalers checks the scrubber's marshalers of Caddy's types against Caddy's own
// under the generic wrapper for requests with arbitrary header names and values, URIs,
// hosts and client addresses.
func FuzzCaddyMarshalers(f *testing.F) {
	f.Add("Authorization", "Bearer abc.def", "/v1/x?email=a%40b.co", "203.0.113.9:1", "muejam.test", false)
	f.Add("X-Card", "4111 1111 1111 1111", "/", "[2001:db8::1]:443", "2001:db8::2", true)
	f.Add("cookie", "s=1", "/?password=hunter2", "@", "", false)
	fe, filter := matchEncoders(f)
	f.Fuzz(func(t *testing.T, name, value, uri, remote, host string, creds bool) {
		r := &http.Request{Method: "GET", Proto: "HTTP/1.1", RequestURI: uri, RemoteAddr: remote, Host: host,
			Header: http.Header{name: {value, "second " + value}, "User-Agent": {value}}}
		r = r.WithContext(context.Background())
		if err := marshalersMatch(t, fe, filter, r, creds); err != "" {
			t.Error(err)
		}
	})
}

// matchEncoders returns a pii_scrub encoder over json (with the field "method" redacted
// whole, so that field names matter) and a pii filter with the same options.
func matchEncoders(t testing.TB) (*fieldEncoder, *Filter) {
	enc := &Encoder{Options: Options{Fields: []string{"method"}}}
	provision(t, enc)
	f := &Filter{Options: enc.Options}
	provision(t, f)
	return enc.Encoder.(*fieldEncoder), f
}

// marshalersMatch encodes r (and its header as a response header and as inline fields) with
// the scrubber's marshalers, as a field, as a context field (With, as Caddy's access logger
// adds the request) and through the filter, and with Caddy's marshalers under the generic
// wrapper; it returns how they differ, or "".
func marshalersMatch(t testing.TB, fe *fieldEncoder, filter *Filter, r *http.Request, creds bool) string {
	req := caddyhttp.LoggableHTTPRequest{Request: r, ShouldLogCredentials: creds}
	hdr := caddyhttp.LoggableHTTPHeader{Header: r.Header, ShouldLogCredentials: creds}
	ours := []zapcore.Field{zap.Object("request", req), zap.Object("resp_headers", hdr), zap.Inline(hdr)}
	// ObjectMarshalerFunc hides the types, so the generic wrapper scrubs Caddy's output.
	generic := []zapcore.Field{zap.Object("request", zapcore.ObjectMarshalerFunc(req.MarshalLogObject)),
		zap.Object("resp_headers", zapcore.ObjectMarshalerFunc(hdr.MarshalLogObject)),
		zap.Inline(zapcore.ObjectMarshalerFunc(hdr.MarshalLogObject))}
	ent := zapcore.Entry{Message: "handled request"}
	got, want := decodeLine(t, encode(t, fe, ent, ours)), decodeLine(t, encode(t, fe, ent, generic))
	if !reflect.DeepEqual(got, want) {
		return fmt.Sprintf("\n got %v\nwant %v", got, want)
	}
	ctxEnc := fe.Clone()
	if err := ctxEnc.AddObject("request", req); err != nil {
		t.Fatal(err)
	}
	if got := decodeLine(t, encode(t, ctxEnc, ent, nil)); !reflect.DeepEqual(got["request"], want["request"]) {
		return fmt.Sprintf("With:\n got %v\nwant %v", got["request"], want["request"])
	}
	if got := decodeLine(t, encode(t, fe.enc, ent, []zapcore.Field{filter.Filter(ours[0])})); !reflect.DeepEqual(got["request"], want["request"]) {
		return fmt.Sprintf("filter:\n got %v\nwant %v", got["request"], want["request"])
	}
	return ""
}

// decodeLine parses a JSON log line.
func decodeLine(t testing.TB, line string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		t.Fatalf("%v: %s", err, line)
	}
	return m
}
