package jwtauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/go-jose/go-jose/v4"
)

func TestParseJWKSPinsEveryKeyToOneAlgorithm(t *testing.T) {
	rsa := newTestKey(t, jose.RS256, "rsa", 0)
	ec := newTestKey(t, jose.ES256, "ec", 0)
	ed := newTestKey(t, jose.EdDSA, "ed", 0)
	hs := newTestKey(t, jose.HS256, "hs", 0)
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	noAlg := func(k jose.JSONWebKey) jose.JSONWebKey { k.Algorithm = ""; return k }
	doc := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		noAlg(rsa.jwk()), noAlg(ec.jwk()), noAlg(ed.jwk()), hs.jwk(),
		noAlg(newTestKey(t, jose.HS256, "hs-no-alg", 1).jwk()),              // skipped: HMAC is never guessed
		{Key: &p384.PublicKey, KeyID: "p384"},                               // skipped: only P-256
		{Key: rsa.pub, KeyID: "rsa-ps", Algorithm: "PS256"},                 // skipped: unsupported alg
		{Key: ec.pub, KeyID: "ec-as-rsa", Algorithm: "RS256"},               // skipped: alg does not fit the key
		{Key: rsa.pub, KeyID: "rsa-enc", Algorithm: "RSA-OAEP", Use: "enc"}, // skipped: not for signatures
	}}
	raw, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	set, err := parseJWKS(raw)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]jose.SignatureAlgorithm{}
	for _, k := range set.keys {
		got[k.id] = k.alg
	}
	want := map[string]jose.SignatureAlgorithm{"rsa": jose.RS256, "ec": jose.ES256, "ed": jose.EdDSA, "hs": jose.HS256}
	if len(got) != len(want) {
		t.Errorf("pinned keys %v, want %v", got, want)
	}
	for kid, alg := range want {
		if got[kid] != alg {
			t.Errorf("key %s pinned to %q, want %s", kid, got[kid], alg)
		}
	}
	if _, err := parseJWKS([]byte(`{"keys":[]}`)); err == nil {
		t.Error("a JWKS without usable keys was accepted")
	}
	if _, err := parseJWKS([]byte(`{"keys":`)); err == nil {
		t.Error("a truncated JWKS was accepted")
	}
}

// The rate limit on unknown-kid reloads, in fake time: however many tokens with unknown kids
// arrive, the document is fetched at most once per minInterval.
func TestUnknownKidReloadsAreRateLimited(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := newTestKey(t, jose.EdDSA, "a", 0)
		b := newTestKey(t, jose.EdDSA, "b", 1)
		c := newTestKey(t, jose.ES256, "c", 0)
		var mu sync.Mutex
		doc := jwks(t, a)
		var errs atomic.Int64
		src := newReloadingKeys(func(context.Context) ([]byte, error) {
			mu.Lock()
			defer mu.Unlock()
			return doc, nil
		}, 30*time.Second, func(error) { errs.Add(1) })
		if err := src.load(t.Context()); err != nil {
			t.Fatal(err)
		}
		v := &verifier{keys: src}
		exp := map[string]any{"exp": time.Now().Add(time.Hour).Unix()}
		tokB := sign(t, b, claimsAt(time.Now(), "bob", exp))
		tokC := sign(t, c, claimsAt(time.Now(), "carol", exp))
		publish := func(keys ...testKey) {
			mu.Lock()
			defer mu.Unlock()
			doc = jwks(t, keys...)
		}

		// b is published right after the scheduled load: its first token reloads.
		publish(a, b)
		if p, err := v.verify(t.Context(), tokB, time.Now()); err != nil || p.id != "bob" {
			t.Fatalf("first token of a new kid: principal %+v, err %v", p, err)
		}
		if n := src.fetches.Load(); n != 2 {
			t.Errorf("%d fetches after a new kid, want 2", n)
		}
		// c is published too, but a reload just happened: within minInterval nothing is
		// fetched, however many tokens name c.
		publish(a, b, c)
		for range 100 {
			if _, err := v.verify(t.Context(), tokC, time.Now()); !errors.Is(err, errUnknownKey) {
				t.Fatalf("err %v, want %v", err, errUnknownKey)
			}
		}
		time.Sleep(29 * time.Second)
		v.verify(t.Context(), tokC, time.Now())
		if n := src.fetches.Load(); n != 2 {
			t.Errorf("%d fetches within the interval, want 2", n)
		}
		time.Sleep(time.Second)
		if p, err := v.verify(t.Context(), tokC, time.Now()); err != nil || p.id != "carol" {
			t.Errorf("after the interval: principal %+v, err %v", p, err)
		}
		if n := src.fetches.Load(); n != 3 {
			t.Errorf("%d fetches after the interval, want 3", n)
		}
		if errs.Load() != 0 {
			t.Errorf("%d reload errors", errs.Load())
		}
	})
}

func TestBackgroundReloadStopsWithContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := newTestKey(t, jose.EdDSA, "a", 0)
		src := newReloadingKeys(func(context.Context) ([]byte, error) { return jwks(t, a), nil }, time.Second, func(err error) { t.Error(err) })
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { src.run(ctx, time.Hour); close(done) }()
		time.Sleep(3*time.Hour + time.Minute)
		if n := src.fetches.Load(); n != 3 {
			t.Errorf("%d fetches in 3h with a 1h interval, want 3", n)
		}
		cancel()
		<-done
	})
}

// jwksServer is a real JWKS endpoint on 127.0.0.1 that counts its fetches.
type jwksServer struct {
	*httptest.Server
	mu      sync.Mutex
	doc     []byte
	fetches atomic.Int64
}

func newJWKSServer(t *testing.T, doc []byte) *jwksServer {
	t.Helper()
	s := &jwksServer{doc: doc}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		s.mu.Lock()
		defer s.mu.Unlock()
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.Write(s.doc)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) publish(doc []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.doc = doc
}

// provision loads j in a fresh Caddy context, cancelled (and j cleaned up) when the test
// ends.
func provision(t *testing.T, j *JWT) *JWT {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(func() {
		j.Cleanup()
		cancel()
	})
	if err := j.Provision(ctx); err != nil {
		t.Fatalf("provision: %v", err)
	}
	if err := j.Validate(); err != nil {
		t.Fatalf("validate: %v", err)
	}
	return j
}

func TestJWKSURLReloadsOnUnknownKid(t *testing.T) {
	a := newTestKey(t, jose.RS256, "a", 0)
	b := newTestKey(t, jose.ES256, "b", 0)
	srv := newJWKSServer(t, jwks(t, a))
	j := provision(t, &JWT{JWKSURL: srv.URL + "/jwks.json", DisableCache: true})
	if n := srv.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches at provision, want 1", n)
	}
	now := time.Now()
	check := func(tok, wantUser string, wantErr error) {
		t.Helper()
		p, err := j.verifier.verify(context.Background(), tok, time.Now())
		if !errors.Is(err, wantErr) || (wantErr == nil && (err != nil || p.id != wantUser)) {
			t.Errorf("principal %+v, err %v; want %q, %v", p, err, wantUser, wantErr)
		}
	}
	check(sign(t, a, claimsAt(now, "alice", nil)), "alice", nil)
	if n := srv.fetches.Load(); n != 1 {
		t.Errorf("%d fetches after a known kid, want 1", n)
	}

	// The provider rotates in key b: the first token naming it reloads the JWKS.
	srv.publish(jwks(t, a, b))
	check(sign(t, b, claimsAt(now, "bob", nil)), "bob", nil)
	if n := srv.fetches.Load(); n != 2 {
		t.Errorf("%d fetches after an unknown kid, want 2", n)
	}

	// Tokens naming kids nobody publishes cannot make the edge hammer the provider.
	stranger := newTestKey(t, jose.EdDSA, "zzz", 0)
	for range 50 {
		check(sign(t, stranger, claimsAt(now, "mallory", nil)), "", errUnknownKey)
	}
	if n := srv.fetches.Load(); n != 2 {
		t.Errorf("%d fetches after 50 tokens with an unknown kid within the interval, want 2", n)
	}
}

func TestJWKSURLDownAtLoadIsNotFatal(t *testing.T) {
	a := newTestKey(t, jose.EdDSA, "a", 0)
	var fetches atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	j := provision(t, &JWT{JWKSURL: srv.URL})
	tok := sign(t, a, claimsAt(time.Now(), "alice", nil))
	for range 10 {
		if _, err := j.verifier.verify(context.Background(), tok, time.Now()); !errors.Is(err, errUnknownKey) {
			t.Errorf("err %v, want %v", err, errUnknownKey)
		}
	}
	if n := fetches.Load(); n != 2 {
		t.Errorf("%d fetches, want 2 (the failed one at load, one retry by the first token)", n)
	}
}

// A JWKS that could not be loaded is retried by the first token, even one without a kid, and
// then once per interval.
func TestFailedLoadIsRetriedByTokens(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := newTestKey(t, jose.EdDSA, "", 0)
		var up atomic.Bool
		var errs atomic.Int64
		src := newReloadingKeys(func(context.Context) ([]byte, error) {
			if !up.Load() {
				return nil, errors.New("connection refused")
			}
			return jwks(t, a), nil
		}, 30*time.Second, func(error) { errs.Add(1) })
		if err := src.load(t.Context()); err == nil {
			t.Fatal("load from a down endpoint succeeded")
		}
		v := &verifier{keys: src}
		tok := sign(t, a, claimsAt(time.Now(), "alice", map[string]any{"exp": time.Now().Add(time.Hour).Unix()}))
		if _, err := v.verify(t.Context(), tok, time.Now()); !errors.Is(err, errUnknownKey) {
			t.Errorf("endpoint down: err %v, want %v", err, errUnknownKey)
		}
		up.Store(true)
		if _, err := v.verify(t.Context(), tok, time.Now()); !errors.Is(err, errUnknownKey) {
			t.Errorf("within the interval: err %v, want %v", err, errUnknownKey)
		}
		time.Sleep(30 * time.Second)
		if p, err := v.verify(t.Context(), tok, time.Now()); err != nil || p.id != "alice" {
			t.Errorf("after the interval: principal %+v, err %v", p, err)
		}
		if n, e := src.fetches.Load(), errs.Load(); n != 3 || e != 1 {
			t.Errorf("%d fetches and %d reported errors, want 3 and 1", n, e)
		}
	})
}
