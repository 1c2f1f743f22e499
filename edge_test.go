package edge

import (
	"encoding/json"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const modulePath = "github.com/muejam/edge"

// manifest is the part of xcaddy.json this test checks.
type manifest struct {
	CaddyVersion string `json:"caddy_version"`
	Plugins      []struct {
		ModulePath string `json:"module_path"`
		Version    string `json:"version"`
	} `json:"plugins"`
	Replacements []struct {
		Old string `json:"old"`
		New string `json:"new"`
	} `json:"replacements"`
}

// modulePackages lists the import paths of the Go packages under modules/.
func modulePackages(t *testing.T) []string {
	t.Helper()
	var pkgs []string
	err := filepath.WalkDir("modules", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return err
		}
		pkg := path.Join(modulePath, filepath.ToSlash(filepath.Dir(p)))
		if !slices.Contains(pkgs, pkg) {
			pkgs = append(pkgs, pkg)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(pkgs) == 0 {
		t.Fatal("no packages under modules/")
	}
	return pkgs
}

func loadManifest(t *testing.T) manifest {
	t.Helper()
	data, err := os.ReadFile("xcaddy.json")
	if err != nil {
		t.Fatal(err)
	}
	var m manifest
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("xcaddy.json: %v", err)
	}
	return m
}

func TestManifestListsEveryModulePackage(t *testing.T) {
	m := loadManifest(t)
	listed := map[string]bool{}
	for _, p := range m.Plugins {
		listed[p.ModulePath] = true
	}
	for _, pkg := range modulePackages(t) {
		if !listed[pkg] {
			t.Errorf("xcaddy.json does not list module package %s: the custom Caddy would be built without it", pkg)
		}
		delete(listed, pkg)
	}
	if !listed[modulePath] {
		t.Errorf("xcaddy.json must list %s at a version (v0.0.0) so the replacement resolves", modulePath)
	}
	delete(listed, modulePath)
	for p := range listed {
		if strings.HasPrefix(p, modulePath+"/") {
			t.Errorf("xcaddy.json lists %s, which is not a package under modules/", p)
		}
	}
	if len(m.Replacements) != 1 || m.Replacements[0].Old != modulePath || m.Replacements[0].New != "." {
		t.Errorf("xcaddy.json must replace %s with the checkout (\".\"): %+v", modulePath, m.Replacements)
	}
}

// TestCaddyVersionMatchesGoMod keeps the binary and the tests on one Caddy: xcaddy.json pins
// the version the custom build uses, go.mod the one every test compiles against.
func TestCaddyVersionMatchesGoMod(t *testing.T) {
	m := loadManifest(t)
	gomod, err := os.ReadFile("go.mod")
	if err != nil {
		t.Fatal(err)
	}
	want := "github.com/caddyserver/caddy/v2 " + m.CaddyVersion
	if !strings.Contains(string(gomod), "\t"+want+"\n") {
		t.Errorf("go.mod does not require %q, the version xcaddy.json pins", want)
	}
}

func TestRootImportsEveryModulePackage(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "edge.go", nil, parser.ImportsOnly)
	if err != nil {
		t.Fatal(err)
	}
	var imported []string
	for _, imp := range f.Imports {
		p, _ := strconv.Unquote(imp.Path.Value)
		imported = append(imported, p)
	}
	for _, pkg := range modulePackages(t) {
		if !slices.Contains(imported, pkg) {
			t.Errorf("edge.go does not import %s", pkg)
		}
	}
}
