package social

import (
	"testing"
	"time"

	"github.com/muejam/edge/appserver/internal/apitest"
)

// TestHotQueriesUseIndexes explains the queries of follows and blocks on a seeded database
// of realistic size: none may read a large table whole.
func TestHotQueriesUseIndexes(t *testing.T) {
	s := apitest.Start(t, apitest.Options{Seeded: true}, register)
	// The users with the most followers and who follow the most.
	popular := apitest.Scalar[string](t, s.DB, "select followee_id from follows group by 1 order by count(*) desc limit 1")
	fan := apitest.Scalar[string](t, s.DB, "select follower_id from follows group by 1 order by count(*) desc limit 1")
	handle := apitest.Scalar[string](t, s.DB, "select handle from profiles where user_id = $1", popular)
	for _, rel := range []struct {
		name string
		rel  relation
	}{{"following", following}, {"followers", followers}, {"blocked", blocked}} {
		for _, user := range []string{popular, fan} {
			apitest.AssertIndexed(t, s.DB, rel.name, rel.rel.query(), user, nil, "", 21)
			apitest.AssertIndexed(t, s.DB, rel.name+", next page", rel.rel.query(), user, time.Now().Add(-24*time.Hour), "m", 21)
		}
	}
	apitest.AssertIndexed(t, s.DB, "blocked", blockedSQL, fan, popular)
	apitest.AssertIndexed(t, s.DB, "user by handle", userByHandleSQL, handle)
}
