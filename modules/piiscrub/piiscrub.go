// Package piiscrub scrubs personal data from Caddy's logs with the scrubber of
// internal/pii, the same one the app server's logs go through.
//
// caddy.logging.encoders.pii_scrub wraps any log encoder (json, console, filter, ...) and
// scrubs every string of every entry: the message, every field, nested objects and arrays
// included (request headers, URI, query, user agent, TLS fields).
// caddy.logging.encoders.filter.pii is a field filter of Caddy's filter encoder, for
// scrubbing chosen fields only.
//
// Both count what they replace in muejam_edge_pii_redactions_total{kind}.
package piiscrub

import (
	"encoding/json"
	"fmt"

	"go.uber.org/zap/zapcore"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/logging"

	"github.com/muejam/edge/internal/pii"
)

func init() {
	caddy.RegisterModule(Encoder{})
	caddy.RegisterModule(Filter{})
}

// Options configures what is detected and how it is replaced; it is shared by the encoder
// and the field filter. Detected, whatever the options: email addresses, phone numbers,
// payment card numbers (Luhn-checked), US SSNs, IBANs (mod-97-checked), IPv4 and IPv6
// addresses, JWTs and bearer tokens, AWS access key IDs and secret keys, credentials in
// URLs, sensitive query and form parameters, and sensitive headers (Authorization, Cookie,
// Set-Cookie, ...).
type Options struct {
	// Modes sets the mode of a kind of personal data, by kind: email, phone, card, ssn,
	// iban, ip, jwt, bearer, aws_access_key_id, aws_secret_key, url_credentials, param,
	// header or field. A mode is one of: redact (writes [REDACTED:kind]); mask (keeps a
	// harmless part: a card's last 4 digits, an IPv4 address's /24, an IPv6 address's /64,
	// an email's first letter and domain; kinds without a mask form are redacted);
	// pseudonym (writes [kind:HEX], a keyed HMAC-SHA256 of the value, the same on every line,
	// so logs stay joinable without being reversible; needs pseudonym_key); off (the
	// detector is disabled). Default: ip is masked, every other kind redacted.
	Modes map[string]string `json:"modes,omitempty"`

	// PseudonymKey is the HMAC key of the pseudonym mode, at least 16 bytes. Write it as a
	// placeholder such as {env.PII_KEY}: it is resolved when the module is provisioned, so
	// the secret never lands in the config. Required when a kind uses the pseudonym mode.
	// Default: none.
	PseudonymKey string `json:"pseudonym_key,omitempty"`

	// Params lists query and form parameter names whose values are redacted (kind param),
	// in addition to the defaults: password, passwd, pwd, pass, secret, client_secret,
	// token, access_token, refresh_token, id_token, api_key, apikey, code, auth, session,
	// session_id, sessionid, signature, sig, otp, pin, private_key and the AWS signature
	// parameters. Names compare case-insensitively, '-' and '_' alike. Default: the defaults
	// only.
	Params []string `json:"params,omitempty"`

	// Headers lists field names (HTTP headers) whose values are redacted whole (kind
	// header), in addition to the defaults: Authorization, Proxy-Authorization, Cookie,
	// Set-Cookie, X-Api-Key, X-Auth-Token, X-Csrf-Token and X-Amz-Security-Token.
	// Default: the defaults only.
	Headers []string `json:"headers,omitempty"`

	// Fields lists log field names whose values are personal data, redacted whole (kind
	// field), e.g. display_name. Default: none.
	Fields []string `json:"fields,omitempty"`
}

// scrubber builds the scrubber of the options, resolving placeholders in the pseudonym key.
func (o Options) scrubber(ctx caddy.Context) (*pii.Scrubber, error) {
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return nil, fmt.Errorf("registering metrics: %v", err)
	}
	return pii.New(pii.Config{
		Modes:        o.Modes,
		PseudonymKey: caddy.NewReplacer().ReplaceAll(o.PseudonymKey, ""),
		Params:       o.Params,
		Headers:      o.Headers,
		Fields:       o.Fields,
		OnRedact:     countRedaction,
	})
}

// Encoder is a log encoder that scrubs personal data from every entry while another
// encoder (json, console, filter, ...) encodes it: the message, the stack trace, every
// string field, every value in nested objects and arrays (an access log's request headers,
// URI, query, user agent, TLS fields), reflected values, errors, stringers and integers
// long enough to be card or phone numbers. A line without personal data is written byte
// for byte as the wrapped encoder writes it.
type Encoder struct {
	// The encoder that encodes the entries, as a module of caddy.logging.encoders (json,
	// console, filter, ...), its name in the "format" key. Default: json.
	WrappedRaw json.RawMessage `json:"wrap,omitempty" caddy:"namespace=caddy.logging.encoders inline_key=format"`

	Options

	zapcore.Encoder `json:"-"`
}

// CaddyModule returns the Caddy module information.
func (Encoder) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "caddy.logging.encoders.pii_scrub",
		New: func() caddy.Module { return new(Encoder) },
	}
}

// Provision builds the scrubber and loads the wrapped encoder.
func (e *Encoder) Provision(ctx caddy.Context) error {
	s, err := e.scrubber(ctx)
	if err != nil {
		return err
	}
	var wrapped zapcore.Encoder
	if e.WrappedRaw == nil {
		je := &logging.JSONEncoder{}
		if err := je.Provision(ctx); err != nil {
			return fmt.Errorf("provisioning json encoder: %v", err)
		}
		wrapped = je
	} else {
		val, err := ctx.LoadModule(e, "WrappedRaw")
		if err != nil {
			return fmt.Errorf("loading wrapped encoder: %v", err)
		}
		wrapped = val.(zapcore.Encoder)
	}
	e.Encoder = newFieldEncoder(wrapped, s)
	return nil
}

// Filter is a field filter of Caddy's filter encoder (caddy.logging.encoders.filter) that
// scrubs personal data from the value of one field, nested objects and arrays included.
type Filter struct {
	Options

	s *pii.Scrubber
}

// CaddyModule returns the Caddy module information.
func (Filter) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "caddy.logging.encoders.filter.pii",
		New: func() caddy.Module { return new(Filter) },
	}
}

// Provision builds the scrubber.
func (f *Filter) Provision(ctx caddy.Context) error {
	s, err := f.scrubber(ctx)
	if err != nil {
		return err
	}
	f.s = s
	return nil
}

// Filter returns the field with its personal data replaced.
func (f *Filter) Filter(in zapcore.Field) zapcore.Field {
	return scrubField(f.s, in)
}

// Interface guards
var (
	_ zapcore.Encoder        = (*Encoder)(nil)
	_ caddy.Provisioner      = (*Encoder)(nil)
	_ caddy.Provisioner      = (*Filter)(nil)
	_ logging.LogFieldFilter = (*Filter)(nil)
)
