package library

import (
	"testing"
	"time"

	"github.com/muejam/edge/appserver/internal/apitest"
)

// TestHotQueriesUseIndexes explains the queries of the library on a seeded database of
// realistic size: none may read a large table whole.
func TestHotQueriesUseIndexes(t *testing.T) {
	s := apitest.Start(t, apitest.Options{Seeded: true}, register)
	// The user with the most shelves, and the fullest shelf.
	owner := apitest.Scalar[string](t, s.DB, "select owner_id from shelves group by 1 order by count(*) desc limit 1")
	shelves := apitest.Scalar[[]int64](t, s.DB, "select array_agg(id) from shelves where owner_id = $1", owner)
	full := apitest.Scalar[int64](t, s.DB, "select shelf_id from shelf_items group by 1 order by count(*) desc limit 1")
	fullOwner := apitest.Scalar[string](t, s.DB, "select owner_id from shelves where id = $1", full)
	apitest.AssertIndexed(t, s.DB, "library", shelfQuery+libraryRest, owner, nil, 21)
	apitest.AssertIndexed(t, s.DB, "library, next page", shelfQuery+libraryRest, owner, "m", 21)
	apitest.AssertIndexed(t, s.DB, "shelf", shelfQuery+"and sh.id = $2", fullOwner, full)
	apitest.AssertIndexed(t, s.DB, "previews", itemQuery, owner, shelves, PreviewStories, nil, 0)
	apitest.AssertIndexed(t, s.DB, "shelf's stories", itemQuery, fullOwner, []int64{full}, 21, nil, 0)
	apitest.AssertIndexed(t, s.DB, "shelf's stories, next page", itemQuery, fullOwner, []int64{full}, 21, time.Now().Add(-72*time.Hour), 100)
	apitest.AssertIndexed(t, s.DB, "own shelf", ownShelfSQL+" for key share", full, fullOwner)
}
