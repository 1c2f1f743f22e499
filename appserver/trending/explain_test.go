package trending

import (
	"testing"

	"github.com/muejam/edge/appserver/internal/apitest"
	"github.com/muejam/edge/appserver/storylist/storylisttest"
)

// TestHotQueriesUseIndexes explains the trending job's query on a seeded database of
// realistic size: it may not read a large table whole.
func TestHotQueriesUseIndexes(t *testing.T) {
	e := storylisttest.StartSeeded(t, register)
	apitest.AssertIndexed(t, e.DB, "trending job", computeTrending, Decay, Window)
}
