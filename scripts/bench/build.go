package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/caddyserver/xcaddy"
)

// Build names one Caddy binary the scenarios run on.
type Build struct {
	// Name is how scenarios refer to the build ("stock", "ratelimit", "edge", ...).
	Name string
	// Plugins are built into stock Caddy with xcaddy's library, each at a pinned tagged
	// version served by the Go module proxy. Empty for stock Caddy.
	Plugins []xcaddy.Dependency
	// Edge marks our own build, bin/caddy from `make caddy`, instead of an xcaddy build.
	Edge bool
}

// Builds lists every binary a scenario may name. Pins are tagged versions the module proxy
// serves (`go list -m -json MODULE@VERSION`); cache-handler v0.17.0 is listed by the proxy but
// fails checksum-database verification here, so v0.16.0 it is.
var Builds = []Build{
	{Name: "stock"},
	{Name: "ratelimit", Plugins: []xcaddy.Dependency{{PackagePath: "github.com/mholt/caddy-ratelimit", Version: "v0.1.0"}}},
	{Name: "cachehandler", Plugins: []xcaddy.Dependency{{PackagePath: "github.com/caddyserver/cache-handler", Version: "v0.16.0"}}},
	{Name: "edge", Edge: true},
}

// buildByName returns the build called name.
func buildByName(name string) (Build, bool) {
	for _, b := range Builds {
		if b.Name == name {
			return b, true
		}
	}
	return Build{}, false
}

// cacheKey names the directory a build is cached in: the Caddy version, every plugin at its
// version and the Go toolchain, so that changing any of them builds afresh.
func cacheKey(caddyVersion string, plugins []xcaddy.Dependency, goVersion string) string {
	parts := []string{"caddy-" + caddyVersion}
	for _, p := range plugins {
		parts = append(parts, filepath.Base(p.PackagePath)+"-"+p.Version)
	}
	parts = append(parts, goVersion)
	return strings.Join(parts, "_")
}

// manifestCaddyVersion reads caddy_version from xcaddy.json, the version every build pins.
func manifestCaddyVersion(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	var m struct {
		CaddyVersion string `json:"caddy_version"`
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	if m.CaddyVersion == "" {
		return "", errors.New(path + ": caddy_version is empty")
	}
	return m.CaddyVersion, nil
}

// builder makes the binaries, caching xcaddy builds under dir.
type builder struct {
	root         string // the checkout, where `make caddy` runs
	dir          string // .run/bench/build
	caddyVersion string
	log          io.Writer
}

// appServer builds bin/appserver with `make appserver` and returns its path.
func (bl builder) appServer(ctx context.Context) (string, error) { return bl.make(ctx, "appserver") }

// make runs `make name` in the checkout and returns the path of bin/name.
func (bl builder) make(ctx context.Context, name string) (string, error) {
	cmd := exec.CommandContext(ctx, "make", "--no-print-directory", name)
	cmd.Dir = bl.root
	cmd.Stdout, cmd.Stderr = bl.log, bl.log
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("make %s: %w", name, err)
	}
	return filepath.Join(bl.root, "bin", name), nil
}

// binary returns the path of b's binary, building it when it is not cached.
func (bl builder) binary(ctx context.Context, b Build) (string, error) {
	if b.Edge {
		return bl.make(ctx, "caddy")
	}
	out := filepath.Join(bl.dir, cacheKey(bl.caddyVersion, b.Plugins, runtime.Version()), "caddy")
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	fmt.Fprintf(bl.log, "bench: building %s (Caddy %s %v) with xcaddy, once\n", b.Name, bl.caddyVersion, b.Plugins)
	xb := xcaddy.Builder{CaddyVersion: bl.caddyVersion, Plugins: b.Plugins}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", err
	}
	tmp := out + ".tmp"
	if err := xb.Build(ctx, tmp); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("xcaddy build %s: %w", b.Name, err)
	}
	return out, os.Rename(tmp, out)
}
