package options_test

import (
	"bufio"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/muejam/edge/appserver/options"
	"github.com/muejam/edge/internal/testenv"
)

func TestTableIsConsistent(t *testing.T) {
	envs, flags := map[string]bool{}, map[string]bool{}
	for _, o := range options.Table {
		if o.Env == "" || o.Flag == "" || o.Doc == "" || o.Parse == nil {
			t.Errorf("%+v: every option needs a variable, a flag, a help line and a parser", o)
		}
		if envs[o.Env] || flags[o.Flag] {
			t.Errorf("%s/-%s: variable or flag given twice", o.Env, o.Flag)
		}
		envs[o.Env], flags[o.Flag] = true, true
		if strings.HasPrefix(o.Flag, "-") || strings.Contains(o.Doc, "("+o.Env+")") {
			t.Errorf("%s: the flag is written without its dash, the help line without the variable", o.Env)
		}
	}
	options.Defaults() // panics when a default does not parse
}

// docRow matches a row of the documented table of the app server's options: its variable
// and flag columns.
var docRow = regexp.MustCompile("^\\|([^|]*)\\|([^|]*)\\|")

var backticked = regexp.MustCompile("`([^`]*)`")

// TestTableIsDocumented checks that the table of the app server's configuration in the
// documentation (a Markdown table whose columns start with Variable and Flag, in README.md or
// under docs/) lists exactly the options of Table, each with its flag. Rows without a flag
// (AWS_REGION, read by the AWS SDK) are not options.
func TestTableIsDocumented(t *testing.T) {
	root := testenv.RepoRoot(t)
	files := []string{filepath.Join(root, "README.md")}
	err := filepath.WalkDir(filepath.Join(root, "docs"), func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(path, ".md") {
			files = append(files, path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, o := range options.Table {
		want[o.Env] = "-" + o.Flag
	}
	found := 0
	for _, file := range files {
		for i, doc := range documentedOptions(t, file) {
			found++
			rel, _ := filepath.Rel(root, file)
			t.Logf("%s (table %d) documents %d options", rel, i+1, len(doc))
			for env, flag := range doc {
				if w, ok := want[env]; !ok {
					t.Errorf("%s (table %d) documents %s, which the app server does not read (%s)", rel, i+1, env, testenv.AppServerConfig)
				} else if flag != w {
					t.Errorf("%s (table %d) documents %s with the flag %s, want %s", rel, i+1, env, flag, w)
				}
			}
			for _, env := range slices.Sorted(maps.Keys(want)) {
				if _, ok := doc[env]; !ok {
					t.Errorf("%s (table %d) does not document %s (%s)", rel, i+1, env, want[env])
				}
			}
		}
	}
	if found == 0 {
		t.Fatalf("found no table of the app server's options (| Variable | Flag | ...) in README.md or docs/")
	}
}

// documentedOptions returns, for each table of file whose header starts with Variable and
// Flag, its variables that have a flag, each mapped to the flag.
func documentedOptions(t *testing.T, file string) []map[string]string {
	f, err := os.Open(file)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		t.Fatal(err)
	}
	defer f.Close()
	var tables []map[string]string
	var cur map[string]string // the table being read, nil outside one of ours
	inTable := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		m := docRow.FindStringSubmatch(line)
		if m == nil {
			inTable, cur = false, nil
			continue
		}
		first, second := strings.TrimSpace(m[1]), strings.TrimSpace(m[2])
		if !inTable { // the header
			inTable = true
			if strings.EqualFold(first, "Variable") && strings.EqualFold(second, "Flag") {
				cur = map[string]string{}
				tables = append(tables, cur)
			}
			continue
		}
		if cur == nil || strings.HasPrefix(first, "---") || strings.HasPrefix(first, ":-") {
			continue
		}
		flags := backticked.FindAllStringSubmatch(second, -1)
		if len(flags) == 0 {
			continue
		}
		for _, env := range backticked.FindAllStringSubmatch(first, -1) {
			cur[env[1]] = flags[0][1]
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return tables
}
