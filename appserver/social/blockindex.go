package social

import (
	"context"

	"github.com/muejam/edge/appserver/dbrouter"
)

// BlocksTag is the cache tag of the BlockIndex: block and unblock purge it, so the app's
// cache manager drops the index on every app instance before either answers.
const BlocksTag = "blocks"

// BlockIndex is every block there is: for each user who blocked anyone, the users they
// blocked. Lists computed once for everyone are filtered with it per viewer at answer time,
// so a signed-in reader's feed costs no query of its own. It holds one entry per block; at
// a few dozen bytes each, a million blocks take tens of megabytes, and it is loaded again
// (one query) only when a block or an unblock purges it.
type BlockIndex map[string]map[string]bool

// LoadBlockIndex reads the BlockIndex. Read it from the primary: a replica that has not yet
// replayed a block would put an index without it in the cache for everyone.
func LoadBlockIndex(ctx context.Context, q dbrouter.Querier) (BlockIndex, error) {
	rows, err := q.Query(ctx, "select blocker_id, blocked_id from blocks")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	ix := BlockIndex{}
	var blocker, blocked string
	for rows.Next() {
		if err := rows.Scan(&blocker, &blocked); err != nil {
			return nil, err
		}
		if ix[blocker] == nil {
			ix[blocker] = map[string]bool{}
		}
		ix[blocker][blocked] = true
	}
	return ix, rows.Err()
}

// Hidden returns the set of users whose content user does not see: those they blocked;
// nil for a user who blocked no one and for "" (anonymous). The set belongs to the index:
// callers only read it.
func (ix BlockIndex) Hidden(user string) map[string]bool { return ix[user] }
