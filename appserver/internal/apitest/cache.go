package apitest

import (
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/muejam/edge/appserver/api"
	"github.com/muejam/edge/appserver/cache"
)

// CacheTTLs are the app server's default lifetimes of answers computed for everyone.
var CacheTTLs = map[api.Resource]time.Duration{api.Feed: time.Minute, api.Whispers: 30 * time.Second, api.Suggestions: 10 * time.Minute}

// Cache returns an app cache manager with no Valkey (its L1 alone) for a test's handlers,
// closed when the test ends.
func Cache(t testing.TB) *cache.Manager {
	t.Helper()
	m, err := cache.New(nil, cache.Config{}, zaptest.NewLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}
