package trending

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/muejam/edge/appserver/discover"
	"github.com/muejam/edge/appserver/internal/apitest"
	"github.com/muejam/edge/appserver/sharedlist"
	"github.com/muejam/edge/appserver/storylist/storylisttest"
)

type req = apitest.Request

// start starts the discovery feeds, which show the scores.
func start(t *testing.T) *storylisttest.Env { return storylisttest.Start(t, register) }

func register(mux *http.ServeMux, shared *sharedlist.Shared, log *zap.Logger) {
	discover.New(shared.DB, log, shared).Register(mux)
}

func TestTrendingFollowsTheDecay(t *testing.T) {
	e := start(t)
	a := e.Story("alice", "A", "2 days", "fantasy")
	b := e.Story("bob", "B", "2 days")
	c := e.Story("alice", "C", "2 days", "fantasy")
	d := e.Story("bob", "D", "2 days", "fantasy")
	draft := e.Story("bob", "Draft", "")
	gone := e.Story("bob", "Deleted later", "2 days")
	quiet := e.Story("alice", "No events", "1 hour")
	// Hours ago of each story's counted events.
	events := map[int64][]float64{
		a:     {23, 23, 23},   // three reads, nearly a day old
		b:     {1, 1},         // two likes an hour old: above a
		c:     {5, 10},        // a whisper and a reply about it
		d:     {2, 23},        // a save and a signed-in read
		gone:  {0, 0, 0, 0.5}, // would lead, but is deleted before the feed is read
		draft: {0, 0, 0},      // has a score (written straight to the database), but is not shown
	}
	t0 := e.Exec(fmt.Sprintf(`
		insert into profiles (user_id, handle) values ('u1', 'user1'), ('u2', 'user2'), ('u3', 'user3');
		insert into shelves (owner_id, name) values ('u1', 'Faves');
		insert into story_reads (story_id, read_at) select %[1]d, now() - interval '23 hours' from generate_series(1, 3);
		insert into story_reads (story_id, read_at) values (%[1]d, now() - interval '25 hours');  -- out of the window
		insert into story_likes (story_id, user_id, created_at) values (%[2]d, 'u1', now() - interval '1 hour'), (%[2]d, 'u2', now() - interval '1 hour');
		insert into whispers (author_id, story_id, body, created_at) values ('u1', %[3]d, 'wow', now() - interval '5 hours');
		insert into whispers (author_id, story_id, parent_id, body, created_at) select 'u2', %[3]d, max(id), 'yes', now() - interval '10 hours' from whispers;
		insert into whispers (author_id, story_id, body, created_at, deleted_at) values ('u3', %[3]d, 'gone', now(), now());
		insert into whispers (author_id, body) values ('u3', 'global, about no story');
		insert into shelf_items (shelf_id, story_id, added_at) select id, %[4]d, now() - interval '2 hours' from shelves;
		insert into shelf_items (shelf_id, story_id, added_at) select id, %[1]d, now() - interval '30 hours' from shelves;  -- out of the window
		insert into story_reads (story_id, user_id, read_at) values (%[4]d, 'u1', now() - interval '23 hours');
		insert into story_likes (story_id, user_id) values (%[5]d, 'u1'), (%[5]d, 'u2'), (%[5]d, 'u3');  -- a draft's
		insert into story_likes (story_id, user_id) values (%[6]d, 'u1'), (%[6]d, 'u2'), (%[6]d, 'u3');
		insert into story_reads (story_id, read_at) values (%[6]d, now() - interval '30 minutes');
	`, a, b, c, d, draft, gone))

	n, err := New(e.DB, 15*time.Minute, zaptest.NewLogger(t)).Compute(context.Background())
	if err != nil || n != int64(len(events)) {
		t.Fatalf("Compute = %d, %v; want %d stories", n, err, len(events))
	}
	rows, err := e.DB.Primary().Query(context.Background(), "select story_id, score, computed_at from story_trending")
	if err != nil {
		t.Fatal(err)
	}
	type score struct {
		ID         int64
		Score      float64
		ComputedAt time.Time
	}
	scores, err := pgx.CollectRows(rows, pgx.RowToStructByPos[score])
	if err != nil {
		t.Fatal(err)
	}
	if len(scores) != len(events) {
		t.Fatalf("scores %+v, want one per story of %v", scores, events)
	}
	for _, s := range scores {
		want := 0.0
		for _, h := range events[s.ID] {
			want += math.Pow(Decay, h+s.ComputedAt.Sub(t0).Hours())
		}
		if math.Abs(s.Score-want) > 1e-9*want {
			t.Errorf("story %d: score %v, want %v", s.ID, s.Score, want)
		}
	}

	e.Exec("update stories set deleted_at = now() where id = $1", gone)
	want := []int64{b, a, c, d} // b's 2 recent events outweigh a's 3 old ones
	for _, limit := range []int{1, 3, 100} {
		ids, resps := e.Pages("/v1/discover?tab=trending", "", limit)
		if !slices.Equal(ids, want) {
			t.Errorf("limit %d: trending %v, want %v (draft %d, deleted %d, quiet %d excluded)", limit, ids, want, draft, gone, quiet)
		}
		resps[0].ExpectHeader(t, "Cache-Control", "public, max-age=60, stale-while-revalidate=60, stale-if-error=3600")
		resps[0].ExpectHeader(t, "Cache-Tags", "feed:trending")
	}
	ids, resps := e.Pages("/v1/discover?tab=trending&tag=fantasy", "", 2)
	if !slices.Equal(ids, []int64{a, c, d}) {
		t.Errorf("trending fantasy %v, want %v", ids, []int64{a, c, d})
	}
	resps[0].ExpectHeader(t, "Cache-Tags", "feed:trending tag:fantasy")
}

func TestTrendingComputesOnceAtATime(t *testing.T) {
	e := start(t)
	id := e.Story("alice", "Liked", "1 hour")
	e.Exec("insert into story_likes (story_id, user_id) values ($1, 'alice')", id)
	ctx := context.Background()
	job := New(e.DB, time.Hour, zaptest.NewLogger(t))

	// Another app server is computing: it holds the lock.
	_, err := e.DB.WithTx(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "select pg_advisory_xact_lock($1)", trendingLockKey); err != nil {
			return err
		}
		if n, err := job.Compute(ctx); n != -1 || err != nil {
			t.Errorf("Compute while another run holds the lock = %d, %v; want -1 (skipped)", n, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := job.Compute(ctx); n != 1 || err != nil {
		t.Fatalf("Compute = %d, %v; want 1 story", n, err)
	}
	if n, err := job.Compute(ctx); n != -1 || err != nil {
		t.Errorf("Compute right after a run = %d, %v; want -1 (scores are fresh)", n, err)
	}

	// Eight app servers at once: one computes; the others find the lock taken or, once it
	// is free, the scores fresh.
	e.Exec("delete from trending_runs")
	var wg sync.WaitGroup
	results := make([]int64, 8)
	for i := range results {
		wg.Go(func() {
			n, err := New(e.DB, time.Hour, zaptest.NewLogger(t)).Compute(ctx)
			if err != nil {
				t.Error(err)
			}
			results[i] = n
		})
	}
	wg.Wait()
	computed, skipped := 0, 0
	for _, n := range results {
		switch n {
		case 1:
			computed++
		case -1:
			skipped++
		}
	}
	if computed != 1 || skipped != len(results)-1 {
		t.Errorf("concurrent runs returned %v, want one 1 and the rest -1", results)
	}

	// Without an interval nothing is ever fresh: every run computes.
	for range 2 {
		if n, err := New(e.DB, 0, zaptest.NewLogger(t)).Compute(ctx); n != 1 || err != nil {
			t.Errorf("Compute with no interval = %d, %v; want 1", n, err)
		}
	}
}

func TestTrendingRunsAtStartAndEveryInterval(t *testing.T) {
	e := start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		New(e.DB, 20*time.Millisecond, zaptest.NewLogger(t)).Run(ctx)
	}()
	var runs []time.Time
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for len(runs) < 2 {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("runs seen: %v; want one at start and another an interval later", runs)
		}
		var at time.Time
		err := e.DB.Primary().QueryRow(ctx, "select computed_at from trending_runs").Scan(&at)
		if err == nil && (len(runs) == 0 || at.After(runs[len(runs)-1])) {
			runs = append(runs, at)
		} else if err != nil && err != pgx.ErrNoRows {
			t.Fatal(err)
		}
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context was cancelled")
	}
	e.Sync()
	e.Send(req{Method: "GET", Path: "/v1/discover?tab=trending"}).Expect(t, http.StatusOK, "")
}
