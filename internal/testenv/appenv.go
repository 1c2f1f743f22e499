package testenv

import (
	"testing"

	"github.com/muejam/edge/appserver/options"
)

// AppServerConfig is the file, relative to the module root, where the app server's options
// are declared: the table AppServerEnv reads.
const AppServerConfig = "appserver/options/options.go"

// AppServerEnv returns the names of the environment variables the app server reads, from its
// table of options (options.Table), each mapped to its default ("" for none). Files that pass
// environment variables to the app server (Dockerfiles, compose, Terraform) check their names
// against it. It fails the test when the table is empty, so that no such check can pass
// vacuously.
func AppServerEnv(t testing.TB) map[string]string {
	t.Helper()
	env := make(map[string]string, len(options.Table))
	for _, o := range options.Table {
		env[o.Env] = o.Default
	}
	if len(env) == 0 {
		t.Fatalf("%s: options.Table has no option", AppServerConfig)
	}
	return env
}
