// Package adapttest runs the golden Caddyfile adapt tests of the edge's modules: each
// testdata/adapt/*.caddyfiletest holds a Caddyfile, a line of ten dashes, and the JSON it must
// adapt to, compared with caddytest.CompareAdapt.
package adapttest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddytest"
)

// Run compares every testdata/adapt/*.caddyfiletest of the calling package, one subtest each.
// It fails when there is none, so a moved folder cannot pass vacuously.
func Run(t *testing.T) {
	t.Helper()
	files, err := filepath.Glob("testdata/adapt/*.caddyfiletest")
	if err != nil || len(files) == 0 {
		t.Fatalf("no adapt tests in testdata/adapt (%v)", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			caddyfile, want, ok := strings.Cut(string(data), "----------\n")
			if !ok {
				t.Fatalf("%s has no ---------- separator", f)
			}
			if !caddytest.CompareAdapt(t, f, caddyfile, "caddyfile", want) {
				t.Errorf("%s: adapted JSON differs (diff above)", f)
			}
		})
	}
}
