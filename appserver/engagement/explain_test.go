package engagement

import (
	"testing"

	"github.com/muejam/edge/appserver/internal/apitest"
)

// TestHotQueriesUseIndexes explains every query of this package on a seeded database of
// realistic size: none may read a large table whole.
func TestHotQueriesUseIndexes(t *testing.T) {
	e := start(t)
	e.Seed(t, apitest.PlanSizes)
	apitest.AssertIndexed(t, e.DB, "like", likeSQL, 42, "u1")
	apitest.AssertIndexed(t, e.DB, "unlike", unlikeSQL, 42, "u1")
	apitest.AssertIndexed(t, e.DB, "read", readSQL, 42, "u1")
}
