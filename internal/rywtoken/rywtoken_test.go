package rywtoken

import (
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

const (
	key      = "0123456789abcdef0123456789abcdef-current"
	otherKey = "fedcba9876543210fedcba9876543210-other"
	ttl      = 30 * time.Second
)

var now = time.UnixMilli(1_800_000_000_000)

func mustKeys(t testing.TB, current string, previous ...string) *Keys {
	t.Helper()
	k, err := NewKeys(current, previous...)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSignVerify(t *testing.T) {
	k := mustKeys(t, key)
	c := Claims{LSN: 0x1_6B37_4D48, Issued: now.Add(-time.Second)}
	s := k.Sign(c)
	if len(s) != encodedLen || strings.ContainsAny(s, "+/=;, ") {
		t.Fatalf("token %q: want %d URL- and cookie-safe characters", s, encodedLen)
	}
	got, o := k.Verify(s, ttl, now)
	if o != Valid || got.LSN != c.LSN || !got.Issued.Equal(c.Issued) {
		t.Fatalf("Verify(Sign(%v)) = %v, %v", c, got, o)
	}
}

func TestVerifyRejects(t *testing.T) {
	k := mustKeys(t, key)
	good := k.Sign(Claims{LSN: 42, Issued: now})
	raw, _ := base64.RawURLEncoding.DecodeString(good)
	flip := func(i int) string {
		b := append([]byte(nil), raw...)
		b[i] ^= 1
		return base64.RawURLEncoding.EncodeToString(b)
	}
	// An unsigned token of the previous format (version 1: LSN and issue time, no tag).
	v1 := base64.RawURLEncoding.EncodeToString(append([]byte{1}, raw[1:bodyLen]...))
	for name, tc := range map[string]struct {
		keys  *Keys
		token string
		at    time.Time
		want  Outcome
	}{
		"tampered lsn":      {k, flip(3), now, Invalid},
		"tampered issued":   {k, flip(12), now, Invalid},
		"tampered tag":      {k, flip(tokenLen - 1), now, Invalid},
		"tampered version":  {k, flip(0), now, Invalid},
		"truncated":         {k, good[:encodedLen-1], now, Invalid},
		"truncated tag":     {k, base64.RawURLEncoding.EncodeToString(raw[:bodyLen+8]), now, Invalid},
		"extended":          {k, good + "A", now, Invalid},
		"unsigned v1":       {k, v1, now, Invalid},
		"other key":         {mustKeys(t, otherKey), good, now, Invalid},
		"not base64":        {k, strings.Repeat("%", encodedLen), now, Invalid},
		"empty":             {k, "", now, Invalid},
		"expired":           {k, good, now.Add(ttl + time.Millisecond), Expired},
		"future":            {k, good, now.Add(-MaxSkew - time.Millisecond), Future},
		"at the ttl":        {k, good, now.Add(ttl), Valid},
		"within clock skew": {k, good, now.Add(-MaxSkew), Valid},
	} {
		c, o := tc.keys.Verify(tc.token, ttl, tc.at)
		if o != tc.want {
			t.Errorf("%s: outcome %v, want %v", name, o, tc.want)
		}
		if o != Valid && c != (Claims{}) {
			t.Errorf("%s: %v came with claims %v", name, o, c)
		}
	}
	// A zero LSN pins nothing: never a valid token, even signed.
	if _, o := k.Verify(k.Sign(Claims{Issued: now}), ttl, now); o != Invalid {
		t.Errorf("zero LSN: %v", o)
	}
}

func TestRotation(t *testing.T) {
	old := mustKeys(t, otherKey)
	rotated := mustKeys(t, key, otherKey)
	byOld := old.Sign(Claims{LSN: 7, Issued: now})
	if _, o := rotated.Verify(byOld, ttl, now); o != Valid {
		t.Errorf("a token of the previous key: %v, want valid during the rotation", o)
	}
	byNew := rotated.Sign(Claims{LSN: 7, Issued: now})
	if byNew == byOld {
		t.Error("the rotated keys sign with the previous key")
	}
	if _, o := mustKeys(t, key).Verify(byNew, ttl, now); o != Valid {
		t.Errorf("a token of the new key after the rotation: %v", o)
	}
	if _, o := mustKeys(t, key).Verify(byOld, ttl, now); o != Invalid {
		t.Errorf("a token of the retired key: %v, want invalid", o)
	}
	if _, o := old.Verify(byNew, ttl, now); o != Invalid {
		t.Errorf("the old key accepts the new key's token: %v", o)
	}
}

func TestNewKeys(t *testing.T) {
	if _, err := NewKeys(""); err == nil {
		t.Error("no key accepted")
	}
	if _, err := NewKeys(key[:MinKeyLen-1]); err == nil {
		t.Error("a 31-byte key accepted")
	}
	if _, err := NewKeys(key, "short"); err == nil {
		t.Error("a short previous key accepted")
	}
	k, err := NewKeys(key, "", otherKey)
	if err != nil || len(k.keys) != 2 {
		t.Errorf("empty previous key not skipped: %v %v", k, err)
	}
	if len(DevKey) < MinKeyLen {
		t.Error("DevKey is too short to be used")
	}
}

func TestFromRequest(t *testing.T) {
	k := mustKeys(t, key)
	good := k.Sign(Claims{LSN: 9, Issued: now})
	forged := mustKeys(t, otherKey).Sign(Claims{LSN: 9, Issued: now})
	for name, tc := range map[string]struct {
		header string
		cookie string // a raw Cookie field
		want   Outcome
	}{
		"none":                         {"", "", Absent},
		"header":                       {good, "", Valid},
		"cookie":                       {"", "a=1; ryw=" + good + "; b=2", Valid},
		"forged header":                {forged, "", Invalid},
		"forged cookie":                {"", "ryw=" + forged, Invalid},
		"forged header, valid cookie":  {forged, "ryw=" + good, Valid},
		"valid header, forged cookie":  {good, "ryw=" + forged, Valid},
		"garbage header, no cookie":    {"x", "", Invalid},
		"garbage header, other cookie": {"x", "xryw=" + good, Invalid},
		"cookie named xryw":            {"", "xryw=" + good, Absent},
		"cookie named ryw2":            {"", "ryw2=" + good, Absent},
		"ryw= in another cookie value": {"", "note=ryw=" + good, Absent},
		"empty cookie":                 {"", "ryw=", Absent},
	} {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		if tc.header != "" {
			req.Header.Set(Header, tc.header)
		}
		if tc.cookie != "" {
			req.Header.Set("Cookie", tc.cookie)
		}
		c, o := k.FromRequest(req, ttl, now)
		if o != tc.want || (o == Valid) != (c.LSN == 9) {
			t.Errorf("%s: %v %v, want %v", name, c, o, tc.want)
		}
	}
}

func TestOutcomeLabels(t *testing.T) {
	seen := map[string]bool{}
	for _, o := range append([]Outcome{Absent}, Outcomes...) {
		if seen[o.String()] {
			t.Errorf("label %q twice", o)
		}
		seen[o.String()] = true
	}
}

func FuzzVerify(f *testing.F) {
	k := mustKeys(f, key)
	good := k.Sign(Claims{LSN: 1, Issued: now})
	for _, s := range []string{"", good, good[:20], "AAAA", strings.Repeat("A", encodedLen), strings.Repeat("_", encodedLen)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, o := k.Verify(s, ttl, now)
		switch {
		case o == Absent:
			t.Fatalf("Verify(%q) = absent", s)
		case o != Valid && c != (Claims{}):
			t.Fatalf("Verify(%q) = %v with claims %v", s, o, c)
		case o != Valid:
			return
		}
		// Only a token signed with the key passes: it must be the one Sign makes of its claims.
		if again := k.Sign(c); again != s {
			t.Fatalf("Verify(%q) valid, but Sign of its claims %v is %q", s, c, again)
		}
	})
}

func BenchmarkVerify(b *testing.B) {
	k := mustKeys(b, key, otherKey)
	s := k.Sign(Claims{LSN: 1, Issued: now})
	for b.Loop() {
		if _, o := k.Verify(s, ttl, now); o != Valid {
			b.Fatal(o)
		}
	}
}
