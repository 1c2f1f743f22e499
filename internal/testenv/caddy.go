package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// StartCaddy runs bin/caddy with config, a JSON config when adapter is "" and else one for
// that config adapter ("caddyfile"), written to a file of the test's temporary directory,
// with the test's environment plus env. It does not wait for Caddy to serve; the process
// stops when the test ends, as Start's do.
func StartCaddy(t testing.TB, env []string, config, adapter string) *Process {
	t.Helper()
	name, args := "caddy.json", []string{}
	if adapter != "" {
		name, args = "Caddyfile", []string{"--adapter", adapter}
	}
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	args = append([]string{"run", "--config", path}, args...)
	return Start(t, env, Binary(t, "caddy"), args...)
}

// CheckCaddyfile checks the Caddyfile at path with bin/caddy: it must pass `caddy validate`,
// run with the test's environment plus env, and be formatted (`caddy fmt --diff`). Each
// check that does not pass fails the test with bin/caddy's output.
func CheckCaddyfile(t testing.TB, path string, env ...string) {
	t.Helper()
	caddy := Binary(t, "caddy")
	validate := exec.Command(caddy, "validate", "--config", path, "--adapter", "caddyfile")
	validate.Env = append(os.Environ(), env...)
	if out, err := validate.CombinedOutput(); err != nil {
		t.Errorf("caddy validate %s: %v\n%s", path, err, out)
	}
	if out, err := exec.Command(caddy, "fmt", "--diff", path).CombinedOutput(); err != nil {
		t.Errorf("%s is not formatted (caddy fmt --overwrite %s): %v\n%s", path, path, err, out)
	}
}

// JSONAt returns the value at path (object keys) in v, a decoded JSON document such as an
// adapted Caddy config, or nil when there is none.
func JSONAt(v any, path ...string) any {
	for _, p := range path {
		m, _ := v.(map[string]any)
		v = m[p]
	}
	return v
}
