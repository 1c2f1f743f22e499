package clientaddr

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/muejam/edge/internal/adapttest"
)

const secret = "origin-secret-0123456789abcdef"

func TestAdapt(t *testing.T) { adapttest.Run(t) }

func TestParseViewerAddress(t *testing.T) {
	for in, want := range map[string]string{
		"198.51.100.7:46532":          "198.51.100.7",
		"198.51.100.7":                "198.51.100.7",
		" 198.51.100.7:1 ":            "198.51.100.7",
		"2001:db8::1:46532":           "2001:db8::1",
		"2001:db8::1:443":             "2001:db8::1", // a port that is also a valid hex group
		"2001:db8:0:0:0:0:0:7:65535":  "2001:db8::7",
		"[2001:db8::1]:46532":         "2001:db8::1",
		"::ffff:198.51.100.7:80":      "198.51.100.7",
		"[::ffff:198.51.100.7]:80":    "198.51.100.7",
		"fdc5:1234:5678:9abc::42:123": "fdc5:1234:5678:9abc::42",
	} {
		got, ok := ParseViewerAddress(in)
		if !ok || got != netip.MustParseAddr(want) {
			t.Errorf("ParseViewerAddress(%q) = %v, %v; want %s", in, got, ok, want)
		}
	}
	for _, in := range []string{
		"", "localhost:80", "198.51.100.7:", "198.51.100.7:x", "2001:db8::1:", "2001:db8::1:123456",
		"2001:db8:", "fe80::1%eth0:80", "1.2.3.4, 5.6.7.8", "::1", strings.Repeat("1", 100),
		"2001:db8::1:-1", "[2001:db8::1]", "1.2.3:80",
	} {
		if got, ok := ParseViewerAddress(in); ok {
			t.Errorf("ParseViewerAddress(%q) = %v, accepted", in, got)
		}
	}
}

func FuzzParseViewerAddress(f *testing.F) {
	for _, s := range []string{"198.51.100.7:46532", "2001:db8::1:46532", "[2001:db8::1]:1", "::1", "x:y:z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, ok := ParseViewerAddress(s)
		if !ok {
			return
		}
		if !a.IsValid() || a.Zone() != "" || a.Is4In6() {
			t.Fatalf("ParseViewerAddress(%q) = %v: not a plain address", s, a)
		}
		// The address is the text before the port: re-parsing its own rendering agrees.
		if b, ok := ParseViewerAddress(a.String() + ":1"); a.Is4() && (!ok || b != a) {
			t.Fatalf("%q → %v, but %v:1 → %v, %v", s, a, a, b, ok)
		}
	})
}

// provision provisions h in a fresh Caddy context.
func provision(t *testing.T, h *Handler) *Handler {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := h.Provision(ctx); err != nil {
		t.Fatalf("provision: %v", err)
	}
	return h
}

// serve runs one request through h and returns the response and the client IP the next
// handler saw, with the headers it got.
func serve(t *testing.T, h *Handler, remote string, header map[string]string) (*httptest.ResponseRecorder, string, http.Header) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/v1/stories", nil)
	req.RemoteAddr = remote
	for k, v := range header {
		req.Header.Set(k, v)
	}
	// As Caddy's server does: the client IP var starts as the peer's address.
	repl := caddy.NewReplacer()
	ctx := context.WithValue(req.Context(), caddy.ReplacerCtxKey, repl)
	ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: strings.Split(remote, ":")[0]})
	req = req.WithContext(ctx)
	var seenIP string
	var seenHeader http.Header
	rec := httptest.NewRecorder()
	err := h.ServeHTTP(rec, req, caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		seenIP, _ = caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
		seenHeader = r.Header.Clone()
		w.WriteHeader(http.StatusNoContent)
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	return rec, seenIP, seenHeader
}

func TestViewerAddressOnlyWithTheSecret(t *testing.T) {
	h := provision(t, &Handler{Secrets: []string{secret}})
	const alb = "10.0.1.20:33000"

	_, ip, hdr := serve(t, h, alb, map[string]string{"X-Origin-Verify": secret, "CloudFront-Viewer-Address": "2001:db8:42::7:51234"})
	if ip != "2001:db8:42::7" {
		t.Errorf("with the secret: client IP %q, want the viewer's", ip)
	}
	if hdr.Get("X-Origin-Verify") != "" {
		t.Error("the secret was passed on to the next handler")
	}

	for name, header := range map[string]map[string]string{
		"no secret":    {"CloudFront-Viewer-Address": "198.51.100.9:1"},
		"wrong secret": {"X-Origin-Verify": secret + "x", "CloudFront-Viewer-Address": "198.51.100.9:1"},
		"prefix":       {"X-Origin-Verify": secret[:10], "CloudFront-Viewer-Address": "198.51.100.9:1"},
	} {
		rec, ip, hdr := serve(t, h, alb, header)
		if rec.Code != http.StatusNoContent || ip != "10.0.1.20" {
			t.Errorf("%s: %d, client IP %q; want passed on with the peer's address", name, rec.Code, ip)
		}
		if hdr.Get("CloudFront-Viewer-Address") != "" {
			t.Errorf("%s: an untrusted viewer address was passed on", name)
		}
	}

	// A valid secret with a field that is not an address keeps the peer's address.
	if _, ip, _ := serve(t, h, alb, map[string]string{"X-Origin-Verify": secret, "CloudFront-Viewer-Address": "evil"}); ip != "10.0.1.20" {
		t.Errorf("garbage viewer address: client IP %q", ip)
	}
}

func TestRequireRefusesRequestsThatSkipTheCDN(t *testing.T) {
	exempt, _ := json.Marshal([]string{"/v1/health"})
	h := provision(t, &Handler{Secrets: []string{"{env.MUEJAM_TEST_OLD_SECRET}", secret}, Require: true,
		ExemptRaw: []caddy.ModuleMap{{"path": exempt}}})

	rec, _, _ := serve(t, h, "203.0.113.5:4000", map[string]string{"CloudFront-Viewer-Address": "198.51.100.9:1"})
	if rec.Code != http.StatusForbidden || rec.Header().Get("Content-Type") != "application/problem+json" ||
		!strings.Contains(rec.Body.String(), `"status":403`) {
		t.Errorf("without the secret: %d %q %s", rec.Code, rec.Header().Get("Content-Type"), rec.Body)
	}
	if rec, _, _ := serve(t, h, "203.0.113.5:4000", map[string]string{"X-Origin-Verify": secret}); rec.Code != http.StatusNoContent {
		t.Errorf("with the secret: %d", rec.Code)
	}

	req := httptest.NewRequest(http.MethodGet, "/v1/health", nil)
	req = req.WithContext(context.WithValue(req.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
	rec = httptest.NewRecorder()
	if err := h.ServeHTTP(rec, req, caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		w.WriteHeader(http.StatusOK)
		return nil
	})); err != nil || rec.Code != http.StatusOK {
		t.Errorf("exempt health check: %d %v", rec.Code, err)
	}
}

func TestSecretRotation(t *testing.T) {
	t.Setenv("MUEJAM_TEST_NEXT_SECRET", "next-secret-abcdefghijklmnop")
	h := provision(t, &Handler{Secrets: []string{secret, "{env.MUEJAM_TEST_NEXT_SECRET}"}, Require: true})
	for _, s := range []string{secret, "next-secret-abcdefghijklmnop"} {
		if rec, _, _ := serve(t, h, "10.0.0.1:1", map[string]string{"X-Origin-Verify": s}); rec.Code != http.StatusNoContent {
			t.Errorf("secret %q: %d", s, rec.Code)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	for name, h := range map[string]*Handler{
		"no secret":    {},
		"unset env":    {Secrets: []string{"{env.MUEJAM_TEST_UNSET_SECRET}"}},
		"short secret": {Secrets: []string{"short"}},
	} {
		if err := h.Provision(ctx); err == nil {
			t.Errorf("%s: provisioned", name)
		}
	}
}
