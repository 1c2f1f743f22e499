package main

import (
	"bytes"
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/muejam/edge/appserver/seed"
	"github.com/muejam/edge/internal/testenv"
)

// TestSeedCommand runs `appserver seed` on a fresh database: it migrates, seeds, computes
// the trending scores and says so; a second run refuses the database unless forced.
func TestSeedCommand(t *testing.T) {
	db := testenv.NewDatabase(t)
	getenv := func(string) string { return "" }
	args := []string{"seed", "-migrate", "true", "-database-url", db.PrimaryURL, "-replica-urls", "", "-scale", "0.002", "-users", "200"}
	var out, errb bytes.Buffer
	if err := run(context.Background(), args, getenv, &out, &errb); err != nil {
		t.Fatalf("seed: %v\n%s%s", err, out.String(), errb.String())
	}
	for _, want := range []string{`applied migration 0001`, `\nwhispers +2000 rows`, `\nstory_trending +[1-9]`, `\nseeded \d+ rows`} {
		if !regexp.MustCompile(want).MatchString(out.String()) {
			t.Errorf("output lacks %s:\n%s", want, out.String())
		}
	}

	err := run(context.Background(), args, getenv, &out, &errb)
	if !errors.Is(err, seed.ErrNotEmpty) || !strings.Contains(err.Error(), "-force") {
		t.Errorf("second run: %v, want ErrNotEmpty naming -force", err)
	}
	if err := run(context.Background(), append(args, "-force"), getenv, &out, &errb); err != nil {
		t.Errorf("forced run: %v", err)
	}
}
