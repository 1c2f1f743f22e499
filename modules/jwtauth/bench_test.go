package jwtauth

import (
	"context"
	"testing"
	"time"
)

// BenchmarkVerify measures one verification of a valid token per algorithm, with the
// verified-token cache (a client sending its token again) and without it (every request
// pays the signature check).
func BenchmarkVerify(b *testing.B) {
	for _, alg := range allAlgs {
		key := newTestKey(b, alg, "k1", 0)
		now := time.Now()
		tok := sign(b, key, claimsAt(now, "alice", map[string]any{"role": "author"}))
		for _, mode := range []string{"nocache", "cache"} {
			b.Run(string(alg)+"/"+mode, func(b *testing.B) {
				v := staticVerifier(key)
				v.claims = map[string]string{"role": "role"}
				if mode == "cache" {
					v.cache = newTokenCache(DefaultCacheSize)
				}
				ctx := context.Background()
				b.ReportAllocs()
				for b.Loop() {
					if _, err := v.verify(ctx, tok, now); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
