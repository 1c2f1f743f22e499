package testenv

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// AppServerConfig is the file, relative to the module root, where the app server reads its
// environment: the source AppServerEnv parses.
const AppServerConfig = "appserver/config.go"

// AppServerEnv parses the app server's configuration (AppServerConfig) and returns the names
// of the environment variables it reads, from its env("NAME", &cfg.Field) calls, each mapped
// to the string that defaultConfig sets Field to, or to "" when there is none. Files that pass
// environment variables to the app server (Dockerfiles, compose, Terraform) check their names
// against it. It fails the test when it finds no name, so a moved configuration cannot make
// those checks pass vacuously. It works from any package directory of the module.
func AppServerEnv(t testing.TB) map[string]string {
	t.Helper()
	path := filepath.Join(moduleRoot(t), AppServerConfig)
	file, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	defaults := map[string]string{}
	env := map[string]string{}
	for _, decl := range file.Decls {
		if fn, ok := decl.(*ast.FuncDecl); ok && fn.Name.Name == "defaultConfig" {
			ast.Inspect(fn, func(n ast.Node) bool {
				if kv, ok := n.(*ast.KeyValueExpr); ok {
					if key, ok := kv.Key.(*ast.Ident); ok {
						defaults[key.Name] = stringLit(kv.Value)
					}
				}
				return true
			})
		}
	}
	ast.Inspect(file, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok || len(call.Args) != 2 {
			return true
		}
		if fun, ok := call.Fun.(*ast.Ident); !ok || fun.Name != "env" {
			return true
		}
		name := stringLit(call.Args[0])
		if name == "" {
			return true
		}
		env[name] = ""
		if ptr, ok := call.Args[1].(*ast.UnaryExpr); ok && ptr.Op == token.AND {
			if sel, ok := ptr.X.(*ast.SelectorExpr); ok {
				env[name] = defaults[sel.Sel.Name]
			}
		}
		return true
	})
	if len(env) == 0 {
		t.Fatalf("%s: found no env(\"NAME\", ...) call; has the app server's configuration moved?", AppServerConfig)
	}
	return env
}

// moduleRoot returns the directory of go.mod above the working directory, which go test sets
// to the directory of the package under test.
func moduleRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the working directory")
		}
		dir = parent
	}
}

// stringLit returns the value of a string literal expression, or "" when e is none.
func stringLit(e ast.Expr) string {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return ""
	}
	s, err := strconv.Unquote(lit.Value)
	if err != nil {
		return ""
	}
	return s
}
