// Package caddyfileread reads the repo's Caddyfiles for tests that keep other files in step
// with them (docker/, infra/terraform/): the environment variables a Caddyfile reads, and its
// admin address and sites as Caddy's parser sees them with the current environment.
//
//	caddyfileread.Setenv(t, path, nil) // the defaults: every variable the file reads unset
//	f := caddyfileread.Read(t, path)
//	for _, site := range f.Sites {
//		for _, addr := range site.Listen { ... }
//	}
package caddyfileread

import (
	"net"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// Ref is how a Caddyfile reads an environment variable.
type Ref int

// The ways a Caddyfile reads an environment variable; ParseTime is the greater, so that the
// strongest of a variable's reads is their max.
const (
	// RunTime is {env.NAME}, replaced when a module provisions: the value stays out of the
	// adapted config.
	RunTime Ref = iota + 1
	// ParseTime is {$NAME} or {$NAME:default}, replaced when the Caddyfile is parsed: the
	// value lands in the adapted config.
	ParseTime
)

// envRef matches the environment variables a Caddyfile reads: {$NAME} and {$NAME:default}
// at parse time, {env.NAME} at run time.
var envRef = regexp.MustCompile(`\{(\$|env\.)([A-Za-z_][A-Za-z0-9_]*)`)

// Env returns the environment variables the Caddyfile at path reads, each mapped to how:
// ParseTime when it reads it at parse time anywhere, else RunTime.
func Env(t testing.TB, path string) map[string]Ref {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]Ref{}
	for _, m := range envRef.FindAllStringSubmatch(string(data), -1) {
		ref := RunTime
		if m[1] == "$" {
			ref = ParseTime
		}
		names[m[2]] = max(names[m[2]], ref)
	}
	return names
}

// Setenv sets each environment variable the Caddyfile at path reads as env says, and unsets
// the others, until the test ends.
func Setenv(t testing.TB, path string, env map[string]string) {
	t.Helper()
	for name := range Env(t, path) {
		if v, ok := env[name]; ok {
			t.Setenv(name, v)
		} else {
			t.Setenv(name, "") // restored when the test ends
			os.Unsetenv(name)
		}
	}
}

// File is a Caddyfile as Caddy's parser reads it with the current environment.
type File struct {
	Path  string
	Admin string // the admin API's listen address: caddy.DefaultAdminListen unless set
	Sites []Site // one per site address, in the order of the file
}

// Site is one address of a site block of a Caddyfile.
type Site struct {
	Key      string              // the site address as written, placeholders replaced
	Listen   []string            // host:port, one per host of its bind directive ("" for every interface)
	Segments []caddyfile.Segment // the site block's directives
	block    int                 // the index of the site block among the file's blocks
}

// Read parses the Caddyfile at path. Every site address must have a port.
func Read(t testing.TB, path string) File {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blocks, err := caddyfile.Parse(path, data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	f := File{Path: path, Admin: caddy.DefaultAdminListen}
	for i, b := range blocks {
		if len(b.Keys) == 0 { // the global options
			for _, seg := range b.Segments {
				if seg.Directive() == "admin" && len(seg) > 1 {
					f.Admin = seg[1].Text
				}
			}
			continue
		}
		binds := []string{""}
		for _, seg := range b.Segments {
			if seg.Directive() == "bind" {
				binds = binds[:0]
				for _, tok := range seg[1:] {
					binds = append(binds, tok.Text)
				}
			}
		}
		for _, key := range b.GetKeysText() {
			addr := key
			if !strings.Contains(addr, "://") {
				addr = "//" + addr
			}
			u, err := url.Parse(addr)
			if err != nil || u.Port() == "" {
				t.Fatalf("%s: site address %q has no port", path, key)
			}
			site := Site{Key: key, Segments: b.Segments, block: i}
			for _, host := range binds {
				site.Listen = append(site.Listen, net.JoinHostPort(host, u.Port()))
			}
			f.Sites = append(f.Sites, site)
		}
	}
	return f
}

// Directive returns the one segment of the directive name among the site blocks of f, and
// fails the test when there is not exactly one.
func (f File) Directive(t testing.TB, name string) caddyfile.Segment {
	t.Helper()
	var found []caddyfile.Segment
	for i, site := range f.Sites {
		if i > 0 && site.block == f.Sites[i-1].block {
			continue // another address of the same block
		}
		for _, seg := range site.Segments {
			if seg.Directive() == name {
				found = append(found, seg)
			}
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s: %d %s directives, want 1", f.Path, len(found), name)
	}
	return found[0]
}

// MetricsOnly reports whether the site serves metrics and nothing else: its directives are
// metrics and bind only.
func (s Site) MetricsOnly() bool {
	if len(s.Segments) == 0 {
		return false
	}
	for _, seg := range s.Segments {
		if d := seg.Directive(); d != "bind" && d != "metrics" {
			return false
		}
	}
	return true
}
