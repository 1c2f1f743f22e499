// Package adapttest runs the golden Caddyfile adapt tests of the edge's modules (each
// testdata/adapt/*.caddyfiletest holds a Caddyfile, a line of ten dashes, and the JSON it must
// adapt to, compared with caddytest.CompareAdapt), adapts whole Caddyfiles with bin/caddy
// for tests that look into the result, and runs a directive's parser over a table of cases
// (Unmarshal).
package adapttest

import (
	"encoding/json"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/muejam/edge/internal/testenv"
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

// File returns the JSON config bin/caddy adapts the Caddyfile at path to (relative to the
// test's directory), with env added to the environment.
func File(t testing.TB, path string, env ...string) map[string]any {
	t.Helper()
	cmd := exec.Command(testenv.Binary(t, "caddy"), "adapt", "--config", path, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("caddy adapt %s: %v", path, err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatalf("caddy adapt %s: %v\n%s", path, err, out)
	}
	return cfg
}

// Handlers returns every object of cfg whose "handler" is name, at any depth.
func Handlers(cfg any, name string) []map[string]any {
	var found []map[string]any
	walkHandlers(cfg, func(h map[string]any) {
		if h["handler"] == name {
			found = append(found, h)
		}
	})
	return found
}

// Handler returns the one object of cfg, adapted from file, whose "handler" is name; the test
// fails when there is not exactly one.
func Handler(t testing.TB, file string, cfg any, name string) map[string]any {
	t.Helper()
	hs := Handlers(cfg, name)
	if len(hs) != 1 {
		t.Fatalf("%s: %d %s handlers, want 1", file, len(hs), name)
	}
	return hs[0]
}

// HandlerOrder lists the handler names of cfg in the order requests meet them: arrays in
// order, objects by sorted key (handlers live in arrays, so sorting keys reorders none).
func HandlerOrder(cfg any) []string {
	var names []string
	walkHandlers(cfg, func(h map[string]any) { names = append(names, h["handler"].(string)) })
	return names
}

// walkHandlers calls fn with every object of v that has a string "handler", depth first.
func walkHandlers(v any, fn func(map[string]any)) {
	switch v := v.(type) {
	case map[string]any:
		if _, ok := v["handler"].(string); ok {
			fn(v)
		}
		for _, k := range slices.Sorted(maps.Keys(v)) {
			walkHandlers(v[k], fn)
		}
	case []any:
		for _, c := range v {
			walkHandlers(c, fn)
		}
	}
}
