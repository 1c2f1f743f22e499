package discover

import (
	"context"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/muejam/edge/appserver/api"
	"github.com/muejam/edge/appserver/internal/apitest"
	"github.com/muejam/edge/appserver/storylist/storylisttest"
	"github.com/muejam/edge/appserver/trending"
)

// TestHotQueriesUseIndexes explains every query of this package on a seeded database of
// realistic size: none may read a large table whole.
func TestHotQueriesUseIndexes(t *testing.T) {
	e := storylisttest.StartSeeded(t, register)
	if _, err := trending.New(e.DB, 0, zaptest.NewLogger(t)).Compute(context.Background()); err != nil {
		t.Fatal(err)
	}
	page := api.Page{Limit: api.DefaultLimit}
	before := time.Now().Add(-100 * time.Hour)
	for _, tt := range []struct {
		name string
		f    feedRequest
	}{
		{"new", feedRequest{tab: TabNew, page: page}},
		{"new, next page", feedRequest{tab: TabNew, page: page, after: &feedCursor{Tab: TabNew, At: before, ID: 2500}}},
		{"new, popular tag", feedRequest{tab: TabNew, tag: "fantasy", page: page}},
		{"new, rare tag", feedRequest{tab: TabNew, tag: "rusty-anchor", page: page}},
		{"new, tag, next page", feedRequest{tab: TabNew, tag: "fantasy", page: page, after: &feedCursor{Tab: TabNew, At: before, ID: 2500}}},
		{"trending", feedRequest{tab: TabTrending, page: page}},
		{"trending, next page", feedRequest{tab: TabTrending, page: page, after: &feedCursor{Tab: TabTrending, Score: 5, ID: 2500}}},
		{"trending, tag", feedRequest{tab: TabTrending, tag: "fantasy", page: page}},
	} {
		sql, args := tt.f.query()
		apitest.AssertIndexed(t, e.DB, tt.name, sql, args...)
	}
}
