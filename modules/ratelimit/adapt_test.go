package ratelimit

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddytest"
)

// TestCaddyfileAdapt compares the JSON of each testdata/adapt/*.caddyfiletest (a Caddyfile,
// a line of dashes, the JSON it must adapt to).
func TestCaddyfileAdapt(t *testing.T) {
	files, err := filepath.Glob("testdata/adapt/*.caddyfiletest")
	if err != nil || len(files) == 0 {
		t.Fatalf("no adapt tests (%v)", err)
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
