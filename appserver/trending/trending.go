// Package trending runs the trending job: it recomputes every story's trending score from
// the saves, reads, likes and whispers of the last Window (package engagement records likes
// and reads), for the trending feed (package discover) and the search ranking to read.
package trending

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/muejam/edge/appserver/dbrouter"
)

// Trending score parameters: every save, read, like and whisper about a story in the last
// Window counts Decay^(hours since the event).
const (
	Window = 24 * time.Hour
	Decay  = 0.98
)

// trendingLockKey is the advisory lock key of the trending job ("muejamtr" in ASCII).
const trendingLockKey int64 = 0x6d75656a616d7472

// computeTrending fills story_trending with the scores as of now(). It reads the events by
// time only: events are made on public stories, and readers filter out the stories that
// have been deleted since (as they must between two runs anyway).
const computeTrending = `insert into story_trending (story_id, score, computed_at)
	select story_id, sum(power($1::float8, extract(epoch from now() - at)::float8 / 3600)), now()
	from (
		select story_id, added_at as at from shelf_items where added_at > now() - $2::interval and added_at <= now()
		union all
		select story_id, read_at from story_reads where read_at > now() - $2::interval and read_at <= now()
		union all
		select story_id, created_at from story_likes where created_at > now() - $2::interval and created_at <= now()
		union all
		select story_id, created_at from whispers
		where story_id is not null and deleted_at is null and created_at > now() - $2::interval and created_at <= now()
	) events
	group by story_id`

// Job is the job that recomputes the trending scores every interval, on the primary.
// App servers run it side by side: an advisory lock lets one compute at a time, and a run
// that finds the scores younger than half the interval leaves them, so together they
// compute about once per interval.
type Job struct {
	db       *dbrouter.Router
	interval time.Duration
	log      *zap.Logger
}

// New returns the trending job, computing every interval through db. Run needs a positive
// interval; with none, Compute never finds the scores fresh.
func New(db *dbrouter.Router, interval time.Duration, log *zap.Logger) *Job {
	return &Job{db: db, interval: interval, log: log}
}

// Run computes the scores at once, then every interval, until ctx is done. Failures are
// logged; the next tick tries again.
func (t *Job) Run(ctx context.Context) {
	tick := time.NewTicker(t.interval)
	defer tick.Stop()
	for {
		start := time.Now()
		n, err := t.Compute(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			t.log.Error("computing trending scores", zap.Error(err))
		case n >= 0:
			t.log.Info("trending scores computed", zap.Int64("stories", n), zap.Duration("took", time.Since(start)))
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// Compute replaces the trending scores in one transaction on the primary and returns how
// many stories have one. It computes nothing and returns -1 when another run holds the lock
// or the scores are younger than half the interval.
func (t *Job) Compute(ctx context.Context) (int64, error) {
	n := int64(-1)
	_, err := t.db.WithTx(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
		n = -1
		var locked, fresh bool
		if err := tx.QueryRow(ctx, "select pg_try_advisory_xact_lock($1)", trendingLockKey).Scan(&locked); err != nil || !locked {
			return err
		}
		// A new statement, a new snapshot: a run that held the lock until now has committed.
		if err := tx.QueryRow(ctx, "select exists (select 1 from trending_runs where computed_at > now() - $1::interval)",
			t.interval/2).Scan(&fresh); err != nil || fresh {
			return err
		}
		if _, err := tx.Exec(ctx, "delete from story_trending"); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, computeTrending, Decay, Window)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `insert into trending_runs (computed_at) values (now())
			on conflict (singleton) do update set computed_at = excluded.computed_at`); err != nil {
			return err
		}
		n = tag.RowsAffected()
		return nil
	})
	if err != nil {
		return -1, err
	}
	return n, nil
}
