package apitest

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/muejam/edge/appserver/dbrouter"
	"github.com/muejam/edge/appserver/seed"
)

// PlanSizes is the data set of the query plan tests: a tenth of seed.DefaultSizes, with
// fewer chapters (their plans do not depend on how many there are, and they are the bulk of
// the bytes), as many users as the default and the thousands of tags a grown site has. The
// planner, knowing the tables, chooses the plans it would choose in production: joins to a
// table of a thousand users or a few hundred tags are cheaper by reading it whole.
var PlanSizes = func() seed.Sizes {
	s := seed.DefaultSizes().Scale(0.1)
	s.Chapters = 4 * s.Stories
	s.Users, s.Tags, s.Blocks = 10_000, 3_000, 2_000
	return s
}()

// LargeTables are the tables that grow with the site, which no hot query may read with a
// sequential scan.
var LargeTables = []string{"profiles", "stories", "chapters", "tags", "story_tags", "follows", "blocks", "shelves",
	"shelf_items", "whispers", "whisper_likes", "story_likes", "story_reads", "story_trending"}

var seqScan = regexp.MustCompile(`Seq Scan on (\w+)`)

// AssertIndexed explains sql on the primary twice: with args (the custom plan the first
// executions get) and as a generic plan (plan_cache_mode force_generic_plan; what a
// statement pgx prepared once may get later). It fails the test when either plan reads one
// of LargeTables with a sequential scan.
func AssertIndexed(t testing.TB, db *dbrouter.Router, name, sql string, args ...any) {
	t.Helper()
	ctx := context.Background()
	_, err := db.WithTx(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
		custom, err := explain(ctx, tx, "explain "+sql, args...)
		if err != nil {
			return fmt.Errorf("custom plan: %w", err)
		}
		if _, err := tx.Exec(ctx, "set local plan_cache_mode = force_generic_plan"); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "prepare explained as "+sql); err != nil {
			return fmt.Errorf("prepare: %w", err)
		}
		defer tx.Exec(ctx, "deallocate explained") //nolint:errcheck // the session ends with the test
		// A generic plan does not depend on the values: nulls do.
		execute := "explain execute explained"
		if len(args) > 0 {
			execute += "(" + strings.TrimSuffix(strings.Repeat("null, ", len(args)), ", ") + ")"
		}
		generic, err := explain(ctx, tx, execute)
		if err != nil {
			return fmt.Errorf("generic plan: %w", err)
		}
		for _, plan := range []struct{ kind, text string }{{"custom", custom}, {"generic", generic}} {
			for _, m := range seqScan.FindAllStringSubmatch(plan.text, -1) {
				if slices.Contains(LargeTables, m[1]) {
					t.Errorf("%s: the %s plan reads %s whole:\n%s", name, plan.kind, m[1], plan.text)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s: %v\n%s", name, err, sql)
	}
}

func explain(ctx context.Context, tx pgx.Tx, sql string, args ...any) (string, error) {
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		return "", err
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	return strings.Join(lines, "\n"), err
}

// Scalar returns the one value sql selects, on the primary.
func Scalar[T any](t testing.TB, db *dbrouter.Router, sql string, args ...any) T {
	t.Helper()
	var v T
	if err := db.Primary().QueryRow(context.Background(), sql, args...).Scan(&v); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return v
}
