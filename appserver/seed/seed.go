// Package seed fills the app server's database with a generated data set of realistic
// shape, for benchmarks and for the tests that check the plans of the hot queries: users,
// tags, stories (published, drafts, soft-deleted) with their chapters, whispers (global and
// about stories, replies, likes), follows, blocks, shelves, and the likes, reads and saves
// of the last 30 days. Popular users, stories, tags and whispers get most of the events.
//
// Run loads everything with COPY in one transaction: the foreign keys and the secondary
// indexes are dropped first and made again at the end (building an index, or checking a
// foreign key, once over all the rows is much faster than row by row), and the tags of the
// stories are loaded before the stories, so that the search document the stories' trigger
// computes is complete at once and the tags' trigger, which would compute it again, is off.
// Counters the app keeps (reply_count, like_count, chapter_seq) agree with the rows, and
// every invariant the handlers keep holds: ids are in time order, a published story has a
// chapter, nobody follows or answers someone who blocks them.
package seed

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Sizes are the numbers of rows Run generates.
type Sizes struct {
	Users        int // profiles
	Tags         int
	Stories      int // 1 to 5 tags each; about 10% drafts, 2% soft-deleted
	Chapters     int // at least one per story
	Whispers     int // a fifth replies; half of the others about a story
	WhisperLikes int
	Follows      int
	Blocks       int
	Shelves      int
	ShelfItems   int
	StoryLikes   int
	StoryReads   int // half anonymous
}

// DefaultSizes is the data set of `appserver seed` without flags.
func DefaultSizes() Sizes {
	return Sizes{
		Users:        10_000,
		Tags:         300,
		Stories:      50_000,
		Chapters:     500_000,
		Whispers:     1_000_000,
		WhisperLikes: 500_000,
		Follows:      200_000,
		Blocks:       2_000,
		Shelves:      20_000,
		ShelfItems:   300_000,
		StoryLikes:   500_000,
		StoryReads:   1_000_000,
	}
}

// Scale returns s with every size multiplied by f and rounded; users, tags and stories
// stay at least 1 when they were.
func (s Sizes) Scale(f float64) Sizes {
	scale := func(n int, least int) int { return max(min(n, least), int(math.Round(float64(n)*f))) }
	return Sizes{
		Users:        scale(s.Users, 1),
		Tags:         scale(s.Tags, 1),
		Stories:      scale(s.Stories, 1),
		Chapters:     scale(s.Chapters, 0),
		Whispers:     scale(s.Whispers, 0),
		WhisperLikes: scale(s.WhisperLikes, 0),
		Follows:      scale(s.Follows, 0),
		Blocks:       scale(s.Blocks, 0),
		Shelves:      scale(s.Shelves, 0),
		ShelfItems:   scale(s.ShelfItems, 0),
		StoryLikes:   scale(s.StoryLikes, 0),
		StoryReads:   scale(s.StoryReads, 0),
	}
}

// Validate reports sizes that cannot be generated: negative ones, rows that need users or
// stories when there are none, fewer chapters than stories, more distinct pairs than half
// of those possible.
func (s Sizes) Validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	for _, n := range []struct {
		name string
		n    int
	}{
		{"users", s.Users}, {"tags", s.Tags}, {"stories", s.Stories}, {"chapters", s.Chapters}, {"whispers", s.Whispers},
		{"whisper likes", s.WhisperLikes}, {"follows", s.Follows}, {"blocks", s.Blocks}, {"shelves", s.Shelves},
		{"shelf items", s.ShelfItems}, {"story likes", s.StoryLikes}, {"story reads", s.StoryReads},
	} {
		check(n.n >= 0, "%s: %d is negative", n.name, n.n)
	}
	check(s.Users > 0 || s.Stories+s.Whispers+s.Shelves == 0, "stories, whispers and shelves need users")
	check(s.Chapters >= s.Stories, "chapters: %d is fewer than the %d stories (each has one)", s.Chapters, s.Stories)
	check(s.Stories > 0 || s.ShelfItems+s.StoryLikes+s.StoryReads == 0, "shelf items, story likes and reads need stories")
	users, stories := float64(s.Users), float64(s.Stories)
	check(float64(s.Follows+s.Blocks) <= users*(users-1)/2, "follows and blocks: %d is more than half of the pairs of %d users", s.Follows+s.Blocks, s.Users)
	check(float64(s.StoryLikes) <= users*stories/2, "story likes: %d is more than half of the pairs of users and stories", s.StoryLikes)
	check(float64(s.StoryReads) <= users*stories, "story reads: half of %d is more than half of the pairs of users and stories", s.StoryReads)
	check(float64(s.WhisperLikes) <= users*float64(s.Whispers)/2, "whisper likes: %d is more than half of the pairs of users and whispers", s.WhisperLikes)
	check(s.Shelves > 0 || s.ShelfItems == 0, "shelf items need shelves")
	check(float64(s.ShelfItems) <= float64(s.Shelves)*stories/2, "shelf items: %d is more than half of the pairs of shelves and stories", s.ShelfItems)
	return errors.Join(errs...)
}

// Config is what Run generates, and how.
type Config struct {
	Sizes Sizes
	// Seed seeds the generator: the same seed and sizes give the same rows, their times
	// relative to Now.
	Seed int64
	// Now is the end of the generated history. Default: the time Run starts.
	Now time.Time
	// Force seeds a database that has rows, deleting them first (TRUNCATE), instead of
	// failing with ErrNotEmpty.
	Force bool
	// Progress, when set, is called after each step.
	Progress func(Step)
}

// Step is one step of Run: the rows a table got, or a phase without rows (indexes, foreign
// keys, commit, analyze), and how long it took.
type Step struct {
	Name string
	Rows int64
	Took time.Duration
}

// ErrNotEmpty is the error of Run on a database that has rows, without Config.Force.
var ErrNotEmpty = errors.New("the database already has rows: seeding it would mix generated rows with them")

// Run fills the database of pool, migrated, with the data set of cfg in one transaction,
// then vacuums and analyzes it. It returns the steps it took. The trending scores are left
// to the trending job (package trending).
func Run(ctx context.Context, pool *pgxpool.Pool, cfg Config) ([]Step, error) {
	if err := cfg.Sizes.Validate(); err != nil {
		return nil, err
	}
	now := cfg.Now
	if now.IsZero() {
		now = time.Now()
	}
	r := &runner{g: newGen(cfg.Seed, now, cfg.Sizes), progress: cfg.Progress}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Release()
	var tables []string
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		r.tx = tx
		if tables, err = r.prepare(ctx, cfg.Force); err != nil {
			return err
		}
		return r.load(ctx)
	})
	if err != nil {
		return r.steps, err
	}
	err = r.step("vacuum analyze", func() (int64, error) {
		_, err := conn.Exec(ctx, "vacuum analyze "+strings.Join(tables, ", "))
		return 0, err
	})
	return r.steps, err
}

// runner runs the steps of Run in a transaction.
type runner struct {
	g        *gen
	tx       pgx.Tx
	progress func(Step)
	steps    []Step
	// Statements that undo what relax did: the indexes to create, then the foreign keys to
	// add and the trigger to turn on.
	indexes, constraints []string
}

// step runs f as the step name.
func (r *runner) step(name string, f func() (int64, error)) error {
	start := time.Now()
	n, err := f()
	if err != nil {
		return fmt.Errorf("seed: %s: %w", name, err)
	}
	s := Step{Name: name, Rows: n, Took: time.Since(start)}
	r.steps = append(r.steps, s)
	if r.progress != nil {
		r.progress(s)
	}
	return nil
}

// exec runs statements in the transaction.
func (r *runner) exec(ctx context.Context, sqls ...string) error {
	for _, sql := range sqls {
		if _, err := r.tx.Exec(ctx, sql); err != nil {
			return fmt.Errorf("%s: %w", sql, err)
		}
	}
	return nil
}

// texts runs sql and collects its rows' text columns.
func (r *runner) texts(ctx context.Context, sql string) ([][]string, error) {
	rows, err := r.tx.Query(ctx, sql)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) ([]string, error) {
		var s []string
		vals, err := row.Values()
		for _, v := range vals {
			s = append(s, fmt.Sprint(v))
		}
		return s, err
	})
}

// prepare checks that the database's tables (every table of the current schema but
// schema_migrations and the audit log, append-only) are empty, or empties them with force,
// and returns them.
func (r *runner) prepare(ctx context.Context, force bool) ([]string, error) {
	var tables []string
	err := r.step("prepare", func() (int64, error) {
		if err := r.exec(ctx, "set local statement_timeout = 0", "set local maintenance_work_mem = '256MB'"); err != nil {
			return 0, err
		}
		rows, err := r.texts(ctx, `select c.oid::regclass::text from pg_class c
			where c.relnamespace = current_schema()::regnamespace and c.relkind in ('r', 'p')
			and c.relname <> 'schema_migrations' and c.relname !~ '^audit_events' order by 1`)
		if err != nil {
			return 0, err
		}
		if len(rows) == 0 {
			return 0, errors.New("the database has no tables: apply the migrations first")
		}
		exists := make([]string, len(rows))
		for i, row := range rows {
			tables = append(tables, row[0])
			exists[i] = "exists (select from " + row[0] + ")"
		}
		var nonEmpty bool
		if err := r.tx.QueryRow(ctx, "select "+strings.Join(exists, " or ")).Scan(&nonEmpty); err != nil {
			return 0, err
		}
		switch {
		case nonEmpty && !force:
			return 0, ErrNotEmpty
		case nonEmpty:
			return 0, r.exec(ctx, "truncate "+strings.Join(tables, ", ")+" restart identity")
		}
		return 0, nil
	})
	return tables, err
}

// relax drops the foreign keys and the secondary indexes of the current schema and turns
// the story tags' search document trigger off, remembering how to undo it.
func (r *runner) relax(ctx context.Context) error {
	return r.step("drop indexes and foreign keys", func() (int64, error) {
		fks, err := r.texts(ctx, `select conrelid::regclass::text, quote_ident(conname), pg_get_constraintdef(oid)
			from pg_constraint where contype = 'f' and connamespace = current_schema()::regnamespace order by 1, 2`)
		if err != nil {
			return 0, err
		}
		// Indexes that back no primary key, unique or exclusion constraint (but the audit
		// log's, which the seed does not write).
		indexes, err := r.texts(ctx, `select i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
			from pg_index i join pg_class c on c.oid = i.indrelid
			where c.relnamespace = current_schema()::regnamespace and c.relname <> 'schema_migrations'
			and c.relname !~ '^audit_events'
			and not exists (select from pg_constraint k where k.conindid = i.indexrelid and k.contype in ('p', 'u', 'x'))
			order by 1`)
		if err != nil {
			return 0, err
		}
		for _, fk := range fks {
			if err := r.exec(ctx, "alter table "+fk[0]+" drop constraint "+fk[1]); err != nil {
				return 0, err
			}
		}
		for _, ix := range indexes {
			if err := r.exec(ctx, "drop index "+ix[0]); err != nil {
				return 0, err
			}
			r.indexes = append(r.indexes, ix[1])
		}
		for _, fk := range fks {
			r.constraints = append(r.constraints, "alter table "+fk[0]+" add constraint "+fk[1]+" "+fk[2])
		}
		r.constraints = append(r.constraints, "alter table story_tags enable trigger story_tags_search_doc_insert")
		return 0, r.exec(ctx, "alter table story_tags disable trigger story_tags_search_doc_insert")
	})
}

// load generates and copies every table, then restores what relax removed and moves the
// identity sequences past the ids it used.
func (r *runner) load(ctx context.Context) error {
	if err := r.relax(ctx); err != nil {
		return err
	}
	g := r.g
	type table struct {
		name string
		rows func() ([]string, pgx.CopyFromSource, error)
	}
	noErr := func(f func() ([]string, pgx.CopyFromSource)) func() ([]string, pgx.CopyFromSource, error) {
		return func() ([]string, pgx.CopyFromSource, error) { c, s := f(); return c, s, nil }
	}
	// In this order: each table's generation needs what those before it decided.
	for _, t := range []table{
		{"profiles", noErr(g.profiles)},
		{"tags", noErr(g.tags)},
		{"story_tags", noErr(g.storyTags)},
		{"stories", noErr(g.stories)},
		{"chapters", g.chapters},
		{"blocks", g.blocksRows},
		{"follows", g.follows},
		{"shelves", noErr(g.shelves)},
		{"shelf_items", g.shelfItems},
		{"story_likes", g.storyLikes},
		{"story_reads", g.storyReads},
		{"whispers", g.whispers},
		{"whisper_likes", noErr(g.whisperLikeRows)},
	} {
		err := r.step(t.name, func() (int64, error) {
			if t.name == "stories" {
				// The stories' trigger reads these tables for each story: with their
				// statistics, it plans its queries for their sizes.
				if err := r.exec(ctx, "analyze profiles, tags, story_tags"); err != nil {
					return 0, err
				}
			}
			cols, src, err := t.rows()
			if err != nil {
				return 0, err
			}
			return r.tx.CopyFrom(ctx, pgx.Identifier{t.name}, cols, src)
		})
		if err != nil {
			return err
		}
	}
	if err := r.step("create indexes", func() (int64, error) { return 0, r.exec(ctx, r.indexes...) }); err != nil {
		return err
	}
	if err := r.step("add foreign keys", func() (int64, error) { return 0, r.exec(ctx, r.constraints...) }); err != nil {
		return err
	}
	return r.step("identity sequences", func() (int64, error) {
		ids, err := r.texts(ctx, `select a.attrelid::regclass::text, a.attname from pg_attribute a
			join pg_class c on c.oid = a.attrelid
			where c.relnamespace = current_schema()::regnamespace and a.attidentity <> '' order by 1`)
		for _, id := range ids {
			if err != nil {
				break
			}
			col := pgx.Identifier{id[1]}.Sanitize()
			_, err = r.tx.Exec(ctx, "select setval(pg_get_serial_sequence($1, $2), coalesce(max("+col+"), 0) + 1, false) from "+id[0], id[0], id[1])
		}
		return 0, err
	})
}
