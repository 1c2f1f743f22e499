package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadBuilderResolvesReplacementsAgainstManifest(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "xcaddy.json")
	os.WriteFile(p, []byte(`{
		"caddy_version": "v2.11.9",
		"plugins": [{"module_path": "example.com/m", "version": "v0.0.0"}],
		"replacements": [{"old": "example.com/m", "new": "."}, {"old": "example.com/x", "new": "example.com/y v1.0.0"}]
	}`), 0o644)
	b, err := LoadBuilder(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(b.Replacements[0].New); got != dir {
		t.Errorf("relative replacement = %q, want %q", got, dir)
	}
	if got := string(b.Replacements[1].New); got != "example.com/y v1.0.0" {
		t.Errorf("module replacement rewritten to %q", got)
	}
	if b.CaddyVersion != "v2.11.9" || b.Plugins[0].PackagePath != "example.com/m" {
		t.Errorf("builder = %+v", b)
	}
}

func TestLoadBuilderRejectsBadManifests(t *testing.T) {
	for name, body := range map[string]string{
		"no version":    `{"plugins": [{"module_path": "a"}]}`,
		"no plugins":    `{"caddy_version": "v2.11.9"}`,
		"unknown field": `{"caddy_version": "v2.11.9", "plugin": []}`,
		"not json":      `caddy_version = 1`,
	} {
		p := filepath.Join(t.TempDir(), "xcaddy.json")
		os.WriteFile(p, []byte(body), 0o644)
		if _, err := LoadBuilder(p); err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: err = %v, want an error naming %s", name, err, p)
		}
	}
}

func TestRepositoryManifestLoads(t *testing.T) {
	b, err := LoadBuilder("../../xcaddy.json")
	if err != nil {
		t.Fatal(err)
	}
	root, _ := filepath.Abs("../..")
	if len(b.Replacements) != 1 || string(b.Replacements[0].New) != root {
		t.Errorf("replacements = %+v, want the checkout %s", b.Replacements, root)
	}
}
