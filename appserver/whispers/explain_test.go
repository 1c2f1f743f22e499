package whispers

import (
	"testing"

	"github.com/muejam/edge/appserver/internal/apitest"
)

// TestHotQueriesUseIndexes explains the queries of the whisper feeds on a seeded database of
// realistic size: none may read a large table whole.
func TestHotQueriesUseIndexes(t *testing.T) {
	s := startWith(t, apitest.Options{Seeded: true})
	// The story and the whisper with the most whispers and replies; a viewer who blocks.
	story := apitest.Scalar[int64](t, s.DB, "select story_id from whispers where story_id is not null group by 1 order by count(*) desc limit 1")
	parent := apitest.Scalar[int64](t, s.DB, "select id from whispers order by reply_count desc limit 1")
	blocker := apitest.Scalar[string](t, s.DB, "select blocker_id from blocks limit 1")
	for _, before := range []int64{0, 50_000} {
		apitest.AssertIndexed(t, s.DB, "global feed", feedSQL(globalScope), before, 21)
		apitest.AssertIndexed(t, s.DB, "story feed", feedSQL(storyScope), before, 21, story)
		apitest.AssertIndexed(t, s.DB, "story feed, quiet story", feedSQL(storyScope), before, 21, 4000)
		apitest.AssertIndexed(t, s.DB, "replies", feedSQL(repliesScope), before, 21, parent)
	}
	for _, viewer := range []string{"", blocker} {
		apitest.AssertIndexed(t, s.DB, "whisper", whisperSQL, parent, viewer)
		apitest.AssertIndexed(t, s.DB, "whisper, locked", whisperSQL+" for no key update of w", parent, viewer)
	}
	apitest.AssertIndexed(t, s.DB, "public story", publicStorySQL, story)
}
