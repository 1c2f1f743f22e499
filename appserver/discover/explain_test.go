package discover

import (
	"testing"
	"time"

	"github.com/muejam/edge/appserver/api"
	"github.com/muejam/edge/appserver/discover/discovertest"
)

// TestHotQueriesUseIndexes explains every query of this package on a database of realistic
// size: none may read a large table whole.
func TestHotQueriesUseIndexes(t *testing.T) {
	e := start(t)
	discovertest.Seed(t, e.DB)
	page := api.Page{Limit: api.DefaultLimit}
	anonymous, blocking := Viewer{}, Viewer{User: "u5", Blocking: true}
	for _, tt := range []struct {
		name string
		f    feedRequest
	}{
		{"new", feedRequest{tab: TabNew, page: page}},
		{"new, next page", feedRequest{tab: TabNew, page: page, after: &feedCursor{Tab: TabNew, At: time.Now().Add(-100 * time.Hour), ID: 2500}}},
		{"new, tag", feedRequest{tab: TabNew, tag: "tag-7", page: page}},
		{"new, tag, next page", feedRequest{tab: TabNew, tag: "tag-7", page: page, after: &feedCursor{Tab: TabNew, At: time.Now().Add(-100 * time.Hour), ID: 2500}}},
		{"trending", feedRequest{tab: TabTrending, page: page}},
		{"trending, next page", feedRequest{tab: TabTrending, page: page, after: &feedCursor{Tab: TabTrending, Score: 5, ID: 2500}}},
		{"trending, tag", feedRequest{tab: TabTrending, tag: "tag-7", page: page}},
	} {
		for _, v := range []Viewer{anonymous, blocking} {
			sql, args := tt.f.query(v)
			discovertest.AssertIndexed(t, e.DB, tt.name, sql, args...)
		}
	}
	discovertest.AssertIndexed(t, e.DB, "trending job", computeTrending, Decay, Window)
	discovertest.AssertIndexed(t, e.DB, "like", likeSQL, 42, "u1")
	discovertest.AssertIndexed(t, e.DB, "unlike", unlikeSQL, 42, "u1")
	discovertest.AssertIndexed(t, e.DB, "read", readSQL, 42, "u1")
}
