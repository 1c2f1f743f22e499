package engagement

import (
	"testing"

	"github.com/muejam/edge/appserver/internal/apitest"
	"github.com/muejam/edge/appserver/storylist/storylisttest"
)

// TestHotQueriesUseIndexes explains every query of this package on a seeded database of
// realistic size: none may read a large table whole.
func TestHotQueriesUseIndexes(t *testing.T) {
	e := storylisttest.StartSeeded(t, register)
	apitest.AssertIndexed(t, e.DB, "like", likeSQL, 42, "u1")
	apitest.AssertIndexed(t, e.DB, "unlike", unlikeSQL, 42, "u1")
	apitest.AssertIndexed(t, e.DB, "read", readSQL, 42, "u1")
}
