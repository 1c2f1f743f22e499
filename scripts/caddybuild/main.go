// Command caddybuild builds the custom Caddy of MueJam Edge from xcaddy.json with xcaddy's
// library.
//
//	go run ./scripts/caddybuild -config xcaddy.json -o bin/caddy
//
// xcaddy.json has the JSON shape of xcaddy's Builder: caddy_version pins Caddy, plugins lists
// the root package of this module at the placeholder version v0.0.0 followed by each module
// package, and replacements points github.com/muejam/edge at this checkout. A relative
// replacement path is taken relative to the directory of xcaddy.json. The version pin lets the
// go command resolve the module from the replacement without asking the module proxy, which
// knows nothing of it; packages under a replaced module path are not fetched at all.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"

	"github.com/caddyserver/xcaddy"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "caddybuild:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("caddybuild", flag.ContinueOnError)
	fs.SetOutput(stderr)
	config := fs.String("config", "xcaddy.json", "build manifest in the JSON shape of xcaddy's Builder")
	out := fs.String("o", "bin/caddy", "output binary")
	if err := fs.Parse(args); err != nil {
		return err
	}
	b, err := LoadBuilder(*config)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		return err
	}
	return b.Build(ctx, *out)
}

// LoadBuilder reads an xcaddy build manifest and resolves its relative replacement paths
// against the manifest's directory.
func LoadBuilder(path string) (xcaddy.Builder, error) {
	var b xcaddy.Builder
	data, err := os.ReadFile(path)
	if err != nil {
		return b, err
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return b, fmt.Errorf("%s: %w", path, err)
	}
	if b.CaddyVersion == "" {
		return b, fmt.Errorf("%s: caddy_version is required", path)
	}
	if len(b.Plugins) == 0 {
		return b, errors.New(path + ": plugins is empty")
	}
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return b, err
	}
	for i, r := range b.Replacements {
		n := string(r.New)
		if strings.HasPrefix(n, ".") {
			b.Replacements[i].New = xcaddy.ReplacementPath(filepath.Join(dir, n))
		}
	}
	return b, nil
}
