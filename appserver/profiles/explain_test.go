package profiles

import (
	"testing"

	"github.com/muejam/edge/appserver/internal/apitest"
)

// TestHotQueriesUseIndexes explains the profile queries on a seeded database of realistic
// size: none may read a large table whole.
func TestHotQueriesUseIndexes(t *testing.T) {
	s := apitest.Start(t, apitest.Options{Seeded: true}, register)
	handle := apitest.Scalar[string](t, s.DB, "select handle from profiles where user_id = 'u17'")
	apitest.AssertIndexed(t, s.DB, "by id", byIDSQL, "u17")
	apitest.AssertIndexed(t, s.DB, "by handle", byHandleSQL, handle)
	apitest.AssertIndexed(t, s.DB, "by handle, other case", byHandleSQL, "UNKNOWN_handle")
}
