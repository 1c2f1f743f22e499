// Package clientaddr provides http.handlers.client_address, the `client_address` directive of
// MueJam Edge: the viewer's real address behind a CDN, trusted only from requests that prove
// they came through our own distribution.
//
// In production the edge sits behind CloudFront and an ALB. Caddy's trusted_proxies and
// client_ip_headers take the client address from the ALB's X-Forwarded-For hop, which is
// the CloudFront edge server's address: every viewer behind one point of presence would share
// it. CloudFront can send the viewer's own address (CloudFront-Viewer-Address, "ip:port",
// an IPv6 address without brackets), but any client that reaches the ALB directly could
// send that field too. This handler trusts it only on requests carrying the secret origin
// header CloudFront adds to every origin request (compared in constant time), sets Caddy's
// client IP ({http.vars.client_ip}: the rate limiter's keys, the access log's client_ip) to
// it, and removes the secret from the request so that neither the app nor a log sees it. With
// Require, a request without the secret (one that skipped the CDN) is refused with 403,
// except those matching Exempt (the load balancer's health checks).
package clientaddr

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/muejam/edge/internal/cfgarg"
	"github.com/muejam/edge/internal/promreg"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Defaults of the handler's options.
const (
	DefaultViewerHeader = "CloudFront-Viewer-Address"
	DefaultSecretHeader = "X-Origin-Verify"
)

// Handler is http.handlers.client_address.
type Handler struct {
	// ViewerHeader is the request field holding the viewer's address, as "ip:port", "ip",
	// or "[ipv6]:port"; CloudFront writes IPv6 as "2001:db8::1:443" (the last colon
	// separates the port). Default: CloudFront-Viewer-Address.
	ViewerHeader string `json:"viewer_header,omitempty"`

	// SecretHeader is the request field the CDN adds with the shared secret to every request
	// it sends to the origin. Default: X-Origin-Verify.
	SecretHeader string `json:"secret_header,omitempty"`

	// Secrets are the accepted values of SecretHeader: one, or two while a rotation is under
	// way. Give them as placeholders ({env.CDN_ORIGIN_SECRET}), replaced when the config
	// loads; a secret that is empty after replacement is ignored. Required.
	Secrets []string `json:"secrets,omitempty"`

	// Require refuses requests without a valid secret (403 and a problem document), except
	// those matching Exempt. Without it, such requests keep the address Caddy determined.
	Require bool `json:"require,omitempty"`

	// ExemptRaw are matcher sets of requests that need no secret, such as the load
	// balancer's health checks (path /v1/health from its subnets).
	ExemptRaw []caddy.ModuleMap `json:"exempt,omitempty" caddy:"namespace=http.matchers"`

	exempt  caddyhttp.MatcherSets
	secrets [][]byte
	logger  *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.client_address",
		New: func() caddy.Module { return new(Handler) },
	}
}

// outcomes counts requests by what the handler did with them.
var outcomes = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "muejam_edge_client_address_total",
	Help: "Requests seen by client_address, by outcome: viewer (address taken from the CDN), no_viewer (valid secret, no usable viewer address), untrusted (no valid secret, passed on), refused, exempt.",
}, []string{"outcome"})

// Provision replaces the secrets' placeholders and loads the exempt matchers.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	if h.ViewerHeader == "" {
		h.ViewerHeader = DefaultViewerHeader
	}
	if h.SecretHeader == "" {
		h.SecretHeader = DefaultSecretHeader
	}
	h.secrets = nil
	for _, s := range h.Secrets {
		if v := cfgarg.Placeholders(s); v != "" {
			h.secrets = append(h.secrets, []byte(v))
		}
	}
	if h.ExemptRaw != nil {
		mods, err := ctx.LoadModule(h, "ExemptRaw")
		if err != nil {
			return fmt.Errorf("loading exempt matchers: %v", err)
		}
		if err := h.exempt.FromInterface(mods); err != nil {
			return err
		}
	}
	for _, o := range []string{"viewer", "no_viewer", "untrusted", "refused", "exempt"} {
		outcomes.WithLabelValues(o)
	}
	if err := promreg.Register(ctx.GetMetricsRegistry(), outcomes); err != nil {
		return err
	}
	return h.Validate()
}

// Validate checks the configuration.
func (h *Handler) Validate() error {
	if len(h.Secrets) == 0 {
		return errors.New("client_address: at least one secret is required")
	}
	if len(h.secrets) == 0 {
		// Required and empty: every request would be refused, or none trusted; say so at load.
		return errors.New("client_address: every secret is empty after replacing placeholders (is CDN_ORIGIN_SECRET set?)")
	}
	for _, s := range h.secrets {
		if len(s) < 16 {
			return errors.New("client_address: a secret must be at least 16 bytes")
		}
	}
	return nil
}

// ServeHTTP sets the client address from the viewer field of a request that carries the
// secret, and refuses or passes on the others.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	got := r.Header.Get(h.SecretHeader)
	r.Header.Del(h.SecretHeader)
	if got == "" || !h.valid(got) {
		switch {
		case !h.Require:
			outcomes.WithLabelValues("untrusted").Inc()
		case h.exempt.AnyMatch(r):
			outcomes.WithLabelValues("exempt").Inc()
		default:
			outcomes.WithLabelValues("refused").Inc()
			return refuse(w)
		}
		r.Header.Del(h.ViewerHeader)
		return next.ServeHTTP(w, r)
	}
	addr, ok := ParseViewerAddress(r.Header.Get(h.ViewerHeader))
	if !ok {
		outcomes.WithLabelValues("no_viewer").Inc()
		return next.ServeHTTP(w, r)
	}
	outcomes.WithLabelValues("viewer").Inc()
	caddyhttp.SetVar(r.Context(), caddyhttp.ClientIPVarKey, addr.String())
	return next.ServeHTTP(w, r)
}

// valid compares got with every secret in constant time (for equal lengths).
func (h *Handler) valid(got string) bool {
	ok := 0
	for _, s := range h.secrets {
		ok |= subtle.ConstantTimeCompare([]byte(got), s)
	}
	return ok == 1
}

// problem is the body of a refused request (RFC 9457).
var problem = []byte(`{"type":"about:blank","title":"Forbidden","status":403,` +
	`"detail":"requests must come through the MueJam CDN"}`)

func refuse(w http.ResponseWriter) error {
	hdr := w.Header()
	hdr.Set("Content-Type", "application/problem+json")
	hdr.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusForbidden)
	_, err := w.Write(problem)
	return err
}

// ParseViewerAddress parses a viewer address as CloudFront sends it: "198.51.100.7:46532",
// "2001:db8::1:46532" (IPv6 without brackets, the port after the last colon), and also
// "[2001:db8::1]:46532" and a bare address. It rejects anything else, including an IPv6
// address without its port (whose last group cannot be told from a port).
func ParseViewerAddress(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 64 {
		return netip.Addr{}, false
	}
	if ap, err := netip.ParseAddrPort(s); err == nil { // 198.51.100.7:1, [2001:db8::1]:1
		return ap.Addr().Unmap(), true
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Is4() {
		return a, true
	}
	i := strings.LastIndexByte(s, ':')
	if i <= 0 || strings.Count(s, ":") < 2 {
		return netip.Addr{}, false
	}
	host, port := s[:i], s[i+1:]
	if port == "" || len(port) > 5 || strings.Trim(port, "0123456789") != "" {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(host)
	if err != nil || !a.Is6() || a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// Interface guards.
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
