package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/muejam/edge/appserver/seed"
	"github.com/muejam/edge/appserver/trending"
)

// seedFlags are the flags of `appserver seed` beside the configuration's: one per size,
// whose default is seed.DefaultSizes scaled by -scale, and -scale, -seed, -force.
type seedFlags struct {
	cfg   seed.Config
	scale float64
	sizes []*sizeFlag
}

// sizeFlag is the flag of one size; unless set, finish scales its default.
type sizeFlag struct {
	n   *int
	set bool
}

func (f *sizeFlag) String() string {
	if f == nil || f.n == nil {
		return ""
	}
	return strconv.Itoa(*f.n)
}

func (f *sizeFlag) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return errors.New("want a number of rows, 0 or more")
	}
	*f.n, f.set = n, true
	return nil
}

// register adds the flags to fs.
func (o *seedFlags) register(fs *flag.FlagSet) {
	o.cfg.Sizes = seed.DefaultSizes()
	s := &o.cfg.Sizes
	for _, f := range []struct {
		name, usage string
		n           *int
	}{
		{"users", "profiles", &s.Users},
		{"tags", "tags", &s.Tags},
		{"stories", "stories: 1 to 5 tags each, about 10% drafts and 2% soft-deleted", &s.Stories},
		{"chapters", "chapters, at least one per story", &s.Chapters},
		{"whispers", "whispers: a fifth replies, half of the others about a story", &s.Whispers},
		{"whisper-likes", "likes of whispers", &s.WhisperLikes},
		{"follows", "follows", &s.Follows},
		{"blocks", "blocks", &s.Blocks},
		{"shelves", "shelves", &s.Shelves},
		{"shelf-items", "stories on shelves (saves), over the last 30 days", &s.ShelfItems},
		{"story-likes", "likes of stories, over the last 30 days", &s.StoryLikes},
		{"story-reads", "reads of stories, half anonymous, over the last 30 days", &s.StoryReads},
	} {
		sf := &sizeFlag{n: f.n}
		o.sizes = append(o.sizes, sf)
		fs.Var(sf, f.name, "`number` of "+f.usage+"; scaled by -scale unless given")
	}
	fs.Float64Var(&o.scale, "scale", 1, "factor of every size not given by its own flag")
	fs.Int64Var(&o.cfg.Seed, "seed", 1, "seed of the generator: the same seed and sizes give the same data set")
	fs.BoolVar(&o.cfg.Force, "force", false, "seed a database that has rows, deleting them first")
}

// finish scales the sizes not set and checks them.
func (o *seedFlags) finish() error {
	if !(o.scale > 0) {
		return usagef("invalid -scale %v: want a positive factor", o.scale)
	}
	set := map[*int]int{}
	for _, f := range o.sizes {
		if f.set {
			set[f.n] = *f.n
		}
	}
	o.cfg.Sizes = o.cfg.Sizes.Scale(o.scale)
	for p, n := range set {
		*p = n
	}
	if err := o.cfg.Sizes.Validate(); err != nil {
		return usagef("invalid sizes: %v", err)
	}
	return nil
}

// runSeed is `appserver seed`: it fills the primary's database with a generated data set
// (applying the migrations first with -migrate), computes the trending scores once and
// prints what it did.
func runSeed(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var o seedFlags
	cfg, err := parseConfigWith("appserver seed", args, getenv, stderr, o.register)
	if err != nil {
		return err
	}
	if err := o.finish(); err != nil {
		return err
	}
	if cfg.Migrate {
		if err := runMigrate(ctx, cfg, stdout); err != nil {
			return err
		}
	}
	pool, err := primaryPool(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()

	var rows int64
	start := time.Now()
	o.cfg.Progress = func(s seed.Step) {
		rows += s.Rows
		if s.Rows == 0 {
			fmt.Fprintf(stdout, "%-30s %22s %7.2fs\n", s.Name, "", s.Took.Seconds())
			return
		}
		fmt.Fprintf(stdout, "%-30s %10d rows %7.2fs %9.0f rows/s\n", s.Name, s.Rows, s.Took.Seconds(), float64(s.Rows)/s.Took.Seconds())
	}
	if _, err := seed.Run(ctx, pool, o.cfg); err != nil {
		if errors.Is(err, seed.ErrNotEmpty) {
			return fmt.Errorf("%w; -force deletes them", err)
		}
		return err
	}

	// The trending job, through a router on the primary alone; with no interval it never
	// finds the scores fresh.
	primary := cfg
	primary.replicas = nil
	db, err := openRouter(ctx, primary, zap.NewNop(), prometheus.NewRegistry())
	if err != nil {
		return err
	}
	defer db.Close()
	trendingStart := time.Now()
	n, err := trending.New(db, 0, zap.NewNop()).Compute(ctx)
	if err != nil {
		return fmt.Errorf("computing trending scores: %w", err)
	}
	fmt.Fprintf(stdout, "%-30s %10d rows %7.2fs\n", "story_trending", n, time.Since(trendingStart).Seconds())
	took := time.Since(start)
	fmt.Fprintf(stdout, "seeded %d rows in %.1fs (%.0f rows/s)\n", rows+n, took.Seconds(), float64(rows+n)/took.Seconds())
	return nil
}
