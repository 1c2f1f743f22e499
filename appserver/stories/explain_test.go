package stories

import (
	"testing"

	"github.com/muejam/edge/appserver/internal/apitest"
)

// TestHotQueriesUseIndexes explains the queries of the story and chapter pages on a seeded
// database of realistic size: none may read a large table whole.
func TestHotQueriesUseIndexes(t *testing.T) {
	s := apitest.Start(t, apitest.Options{Seeded: true}, register)
	// The most prolific author, and the story with the most chapters.
	author := apitest.Scalar[string](t, s.DB, "select author_id from stories group by 1 order by count(*) desc limit 1")
	long := apitest.Scalar[int64](t, s.DB, "select id from stories order by chapter_seq desc limit 1")
	for _, id := range []int64{42, long} {
		apitest.AssertIndexed(t, s.DB, "story", storySQL, id)
		apitest.AssertIndexed(t, s.DB, "story, locked", storySQL+" for update of s", id)
		apitest.AssertIndexed(t, s.DB, "story access", storyAccessSQL, id)
		apitest.AssertIndexed(t, s.DB, "chapters", chaptersSQL, id, 0, 21)
		apitest.AssertIndexed(t, s.DB, "chapters, next page", chaptersSQL, id, 20, 21)
		apitest.AssertIndexed(t, s.DB, "chapter", chapterSQL, id, 3)
	}
	for _, a := range []string{author, "u999"} {
		apitest.AssertIndexed(t, s.DB, "author's stories", authorStoriesSQL, a, 0, 21)
		apitest.AssertIndexed(t, s.DB, "author's stories, next page", authorStoriesSQL, a, 2000, 21)
	}
}
