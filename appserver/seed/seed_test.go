package seed

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/muejam/edge/appserver/migrate"
	"github.com/muejam/edge/internal/testenv"
)

// small is the data set of these tests: a hundredth of the default.
var small = DefaultSizes().Scale(0.01)

// newPool returns a pool on a fresh migrated database.
func newPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testenv.NewDatabase(t).PrimaryURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := migrate.Up(ctx, pool); err != nil {
		t.Fatal(err)
	}
	return pool
}

// count returns the result of a query counting something.
func count(t *testing.T, pool *pgxpool.Pool, sql string) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), sql).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// schema describes the indexes, constraints and triggers of the database.
func schema(t *testing.T, pool *pgxpool.Pool) string {
	t.Helper()
	rows, err := pool.Query(context.Background(), `
		select indexdef from pg_indexes where schemaname = 'public'
		union all select conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid) from pg_constraint where connamespace = 'public'::regnamespace
		union all select tgname || ' ' || tgenabled::text from pg_trigger where not tgisinternal
		order by 1`)
	if err != nil {
		t.Fatal(err)
	}
	defs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(defs, "\n")
}

func TestRunCountsAndInvariants(t *testing.T) {
	pool := newPool(t)
	before := schema(t, pool)
	var steps []string
	_, err := Run(context.Background(), pool, Config{Sizes: small, Seed: 7, Progress: func(s Step) { steps = append(steps, s.Name) }})
	if err != nil {
		t.Fatal(err)
	}
	if after := schema(t, pool); after != before {
		t.Errorf("the schema changed:\n%s\nwant\n%s", after, before)
	}
	if !strings.Contains(strings.Join(steps, ","), "whispers,whisper_likes") {
		t.Errorf("steps reported: %v", steps)
	}

	for table, want := range map[string]int{
		"profiles": small.Users, "tags": small.Tags, "stories": small.Stories, "chapters": small.Chapters,
		"whispers": small.Whispers, "whisper_likes": small.WhisperLikes, "follows": small.Follows, "blocks": small.Blocks,
		"shelves": small.Shelves, "shelf_items": small.ShelfItems, "story_likes": small.StoryLikes, "story_reads": small.StoryReads,
	} {
		if got := count(t, pool, "select count(*) from "+table); got != want {
			t.Errorf("%s: %d rows, want %d", table, got, want)
		}
	}

	// Each check counts the rows that break an invariant.
	for _, c := range []struct{ name, sql string }{
		{"stories without 1 to 5 tags", `select count(*) from stories s
			where (select count(*) from story_tags st where st.story_id = s.id) not between 1 and 5`},
		{"chapters not numbered 1..chapter_seq", `select count(*) from stories s
			left join (select story_id, count(*) n, min(number) lo, max(number) hi from chapters group by story_id) c on c.story_id = s.id
			where c.n is distinct from s.chapter_seq or c.lo <> 1 or c.hi <> c.n`},
		{"chapters whose html is not rendered", "select count(*) from chapters where content_html not like '<p>%' and content_html not like '<blockquote>%'"},
		{"search documents not up to date", "select count(*) from stories where search_doc <> story_search_document(id, author_id, title, blurb)"},
		{"stories deleted or published before created", "select count(*) from stories where published_at < created_at or deleted_at < created_at or updated_at < created_at"},
		{"reply counts wrong", `select count(*) from whispers w
			where w.reply_count <> (select count(*) from whispers r where r.parent_id = w.id and r.deleted_at is null)`},
		{"like counts wrong", `select count(*) from whispers w
			where w.like_count <> (select count(*) from whisper_likes l where l.whisper_id = w.id)`},
		{"replies out of their parent's story or before it", `select count(*) from whispers r join whispers p on p.id = r.parent_id
			where r.story_id is distinct from p.story_id or r.id <= p.id or r.created_at < p.created_at`},
		{"replies to deleted whispers", `select count(*) from whispers r join whispers p on p.id = r.parent_id where p.deleted_at < r.created_at`},
		{"whispers about stories not public when whispered", `select count(*) from whispers w join stories s on s.id = w.story_id
			where s.published_at > w.created_at or s.deleted_at is not null`},
		{"whispers out of time order", "select count(*) from whispers a join whispers b on b.id = a.id + 1 where b.created_at < a.created_at"},
		{"events on stories not public", `select count(*) from (select story_id from shelf_items union all select story_id from story_likes
			union all select story_id from story_reads) e join stories s on s.id = e.story_id where s.published_at is null or s.deleted_at is not null`},
		{"events older than 30 days or in the future", `select count(*) from (select added_at t from shelf_items union all select created_at from story_likes
			union all select read_at from story_reads) e where t < now() - interval '30 days 1 minute' or t > now()`},
		{"follows between users who block each other", `select count(*) from follows f join blocks b
			on (b.blocker_id, b.blocked_id) in ((f.follower_id, f.followee_id), (f.followee_id, f.follower_id))`},
		{"replies to or likes of users who block their author", `select count(*) from (
			select p.author_id a, r.author_id b from whispers r join whispers p on p.id = r.parent_id
			union all select w.author_id, l.user_id from whisper_likes l join whispers w on w.id = l.whisper_id) x
			join blocks b on b.blocker_id = x.a and b.blocked_id = x.b`},
	} {
		if n := count(t, pool, c.sql); n > 0 {
			t.Errorf("%d %s", n, c.name)
		}
	}

	// Proportions, roughly.
	for _, c := range []struct {
		name     string
		sql      string
		min, max float64
	}{
		{"published", "select count(*) filter (where published_at is not null)::float8 / count(*) from stories", 0.85, 0.95},
		{"deleted", "select count(*) filter (where deleted_at is not null)::float8 / count(*) from stories", 0.005, 0.04},
		{"replies", "select count(*) filter (where parent_id is not null)::float8 / count(*) from whispers", 0.17, 0.23},
		{"global", "select count(*) filter (where story_id is null)::float8 / count(*) from whispers", 0.3, 0.6},
		{"anonymous reads", "select count(*) filter (where user_id is null)::float8 / count(*) from story_reads", 0.45, 0.55},
	} {
		var share float64
		if err := pool.QueryRow(context.Background(), c.sql).Scan(&share); err != nil {
			t.Fatal(err)
		}
		if share < c.min || share > c.max {
			t.Errorf("%s: %.3f of the rows, want %.2f to %.2f", c.name, share, c.min, c.max)
		}
	}

	// The identity sequences continue after the generated ids.
	if next := count(t, pool, "insert into tags (name) values ('brand-new') returning id"); next != small.Tags+1 {
		t.Errorf("a new tag got id %d, want %d", next, small.Tags+1)
	}
}

func TestRunRefusesARunDatabaseUnlessForced(t *testing.T) {
	pool := newPool(t)
	ctx := context.Background()
	sizes := Sizes{Users: 20, Tags: 5, Stories: 10, Chapters: 30, Whispers: 50, WhisperLikes: 20, Follows: 30, Blocks: 3,
		Shelves: 5, ShelfItems: 10, StoryLikes: 20, StoryReads: 40}
	if _, err := Run(ctx, pool, Config{Sizes: sizes}); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "insert into trending_runs (computed_at) values (now())"); err != nil {
		t.Fatal(err)
	}
	if _, err := Run(ctx, pool, Config{Sizes: sizes}); !errors.Is(err, ErrNotEmpty) {
		t.Fatalf("second run: %v, want ErrNotEmpty", err)
	}
	if _, err := Run(ctx, pool, Config{Sizes: sizes, Force: true}); err != nil {
		t.Fatalf("forced: %v", err)
	}
	if n := count(t, pool, "select count(*) from profiles") + count(t, pool, "select count(*) from trending_runs"); n != sizes.Users {
		t.Errorf("after a forced run: %d profiles and trending runs, want the %d profiles alone", n, sizes.Users)
	}
}

// TestRunIsDeterministic seeds two databases with the same seed and time: every table has
// the same rows.
func TestRunIsDeterministic(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	var sums [2]string
	for i := range sums {
		pool := newPool(t)
		if _, err := Run(ctx, pool, Config{Sizes: small, Seed: 42, Now: now}); err != nil {
			t.Fatal(err)
		}
		var parts []string
		for _, table := range []string{"profiles", "tags", "story_tags", "stories", "chapters", "follows", "blocks", "shelves",
			"shelf_items", "story_likes", "story_reads", "whispers", "whisper_likes"} {
			var sum string
			err := pool.QueryRow(ctx, "select md5(string_agg(t::text, ',' order by t::text)) from "+table+" t").Scan(&sum)
			if err != nil {
				t.Fatal(err)
			}
			parts = append(parts, table+" "+sum)
		}
		sums[i] = strings.Join(parts, "\n")
	}
	if sums[0] != sums[1] {
		t.Errorf("two runs differ:\n%s\n\n%s", sums[0], sums[1])
	}
}

func TestSizesValidate(t *testing.T) {
	for _, tt := range []struct {
		name   string
		change func(*Sizes)
		want   string
	}{
		{"default", func(*Sizes) {}, ""},
		{"negative", func(s *Sizes) { s.Whispers = -1 }, "whispers: -1 is negative"},
		{"fewer chapters than stories", func(s *Sizes) { s.Chapters = s.Stories - 1 }, "chapters"},
		{"too many follows", func(s *Sizes) { s.Users = 10 }, "follows and blocks"},
		{"whispers without users", func(s *Sizes) { *s = Sizes{Whispers: 1} }, "need users"},
	} {
		s := DefaultSizes()
		tt.change(&s)
		err := s.Validate()
		if (err == nil) != (tt.want == "") || err != nil && !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
}
