package testenv

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"testing"
)

// AppServerConfig is the file, relative to the module root, where the app server reads its
// environment: the source AppServerEnv parses.
const AppServerConfig = "appserver/config.go"

// AppServerEnv parses the app server's configuration (AppServerConfig) and returns the names
// of the environment variables it reads, from its env("NAME", &cfg.Field) calls and its tables
// of options with an env column, each mapped to the string that defaultConfig sets Field to,
// or to "" when there is none. Files that pass
// environment variables to the app server (Dockerfiles, compose, Terraform) check their names
// against it. It fails the test when it finds no name, so a moved configuration cannot make
// those checks pass vacuously. It works from any package directory of the module.
func AppServerEnv(t testing.TB) map[string]string {
	t.Helper()
	path := filepath.Join(RepoRoot(t), AppServerConfig)
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
		if lit, ok := n.(*ast.CompositeLit); ok {
			for _, name := range envTable(lit) {
				env[name] = ""
			}
			return true
		}
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

// envTable returns the names in the first column of a table of options whose element type
// is a struct with "env" as its first field, such as
//
//	[]struct{ env, flag string; ... }{{"DB_MAX_LAG", "db-max-lag", ...}, ...}
//
// which configuration reads in a loop.
func envTable(lit *ast.CompositeLit) []string {
	arr, ok := lit.Type.(*ast.ArrayType)
	if !ok {
		return nil
	}
	st, ok := arr.Elt.(*ast.StructType)
	if !ok || len(st.Fields.List) == 0 || len(st.Fields.List[0].Names) == 0 || st.Fields.List[0].Names[0].Name != "env" {
		return nil
	}
	var names []string
	for _, elt := range lit.Elts {
		if row, ok := elt.(*ast.CompositeLit); ok && len(row.Elts) > 0 {
			if name := stringLit(row.Elts[0]); name != "" {
				names = append(names, name)
			}
		}
	}
	return names
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
