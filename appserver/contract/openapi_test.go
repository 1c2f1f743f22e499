package contract

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	verrors "github.com/pb33f/libopenapi-validator/errors"
	"github.com/pb33f/libopenapi/datamodel"
	"github.com/pb33f/libopenapi/datamodel/high/base"
	v3 "github.com/pb33f/libopenapi/datamodel/high/v3"
	"go.uber.org/zap"

	"github.com/muejam/edge/appserver/health"
	"github.com/muejam/edge/appserver/internal/apitest"
	"github.com/muejam/edge/appserver/routes"
	"github.com/muejam/edge/appserver/sharedlist"
	"github.com/muejam/edge/internal/testenv"
)

// routeRecorder is the api.Mux the tests hand to routes.Register: a real http.ServeMux (so that
// patterns are checked as the app server checks them) that also keeps every pattern.
type routeRecorder struct {
	*http.ServeMux
	patterns []string
}

// Handle records pattern and registers h.
func (r *routeRecorder) Handle(pattern string, h http.Handler) {
	r.patterns = append(r.patterns, pattern)
	r.ServeMux.Handle(pattern, h)
}

// HandleFunc records pattern and registers f.
func (r *routeRecorder) HandleFunc(pattern string, f func(http.ResponseWriter, *http.Request)) {
	r.patterns = append(r.patterns, pattern)
	r.ServeMux.HandleFunc(pattern, f)
}

// registeredRoutes returns the routes routes.Register adds ("GET /v1/stories/{id}", ...) and the
// mux serving them (its handlers have no database: only those that need none may be called).
func registeredRoutes(t *testing.T) ([]string, *http.ServeMux) {
	t.Helper()
	rec := &routeRecorder{ServeMux: http.NewServeMux()}
	routes.Register(rec, health.New(time.Second), nil, &sharedlist.Shared{Cache: apitest.Cache(t), TTL: apitest.CacheTTLs}, zap.NewNop())
	for _, p := range rec.patterns {
		if method, path, ok := strings.Cut(p, " "); !ok || method == "" || !strings.HasPrefix(path, "/v1/") {
			t.Errorf("route %q: register every route as \"METHOD /v1/...\"", p)
		}
	}
	return rec.patterns, rec.ServeMux
}

// servedDocument returns the OpenAPI document as GET /v1/openapi.json serves it, parsed,
// with its model built: every $ref resolved.
func servedDocument(t *testing.T, mux http.Handler) (libopenapi.Document, *v3.Document) {
	t.Helper()
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/openapi.json", nil))
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("GET /v1/openapi.json = %d %s", rec.Code, rec.Header().Get("Content-Type"))
	}
	doc, err := libopenapi.NewDocumentWithConfiguration(rec.Body.Bytes(), &datamodel.DocumentConfiguration{
		Logger: slog.New(slog.DiscardHandler), // the errors are returned, not logged
	})
	if err != nil {
		t.Fatalf("the served document does not parse: %v", err)
	}
	model, err := doc.BuildV3Model()
	if err != nil {
		t.Fatalf("the served document does not build (an unresolved $ref?): %v", err)
	}
	return doc, &model.Model
}

// operation is one operation of the document: its path item and the operation itself.
type operation struct {
	path string
	item *v3.PathItem
	op   *v3.Operation
}

// documentedRoutes returns the document's operations by route, written as the app server
// registers them ("GET /v1/stories/{id}").
func documentedRoutes(model *v3.Document) map[string]operation {
	ops := map[string]operation{}
	for path, item := range model.Paths.PathItems.FromOldest() {
		for method, op := range item.GetOperations().FromOldest() {
			ops[strings.ToUpper(method)+" "+path] = operation{path, item, op}
		}
	}
	return ops
}

// anonymous reports whether the operation may be called without a token: its security (or
// the document's, when it states none) is empty or has an empty requirement ({}).
func (o operation) anonymous(model *v3.Document) bool {
	sec := o.op.Security
	if sec == nil {
		sec = model.Security
	}
	return len(sec) == 0 || slices.ContainsFunc(sec, func(r *base.SecurityRequirement) bool {
		return r.Requirements == nil || r.Requirements.Len() == 0
	})
}

func TestOpenAPIDocumentIsValid31(t *testing.T) {
	_, mux := registeredRoutes(t)
	doc, model := servedDocument(t, mux)
	if v := doc.GetVersion(); !strings.HasPrefix(v, "3.1.") {
		t.Errorf("openapi: %q, want 3.1.x", v)
	}
	v, errs := validator.NewValidator(doc)
	if len(errs) > 0 {
		t.Fatalf("validator: %v", errs)
	}
	if ok, verrs := v.ValidateDocument(); !ok {
		report(t, "not OpenAPI 3.1", verrs)
	}

	template := regexp.MustCompile(`\{([^}]+)\}`)
	ids := map[string]string{}
	for route, o := range documentedRoutes(model) {
		var want []string
		for _, m := range template.FindAllStringSubmatch(o.path, -1) {
			want = append(want, m[1])
		}
		var declared []string
		for _, p := range slices.Concat(o.item.Parameters, o.op.Parameters) {
			if p.In == "path" {
				declared = append(declared, p.Name)
				if p.Required == nil || !*p.Required {
					t.Errorf("%s: path parameter %s is not required", route, p.Name)
				}
			}
		}
		slices.Sort(want)
		slices.Sort(declared)
		if !slices.Equal(want, declared) {
			t.Errorf("%s: path parameters declared %v, the path has %v", route, declared, want)
		}
		switch prev, dup := ids[o.op.OperationId]; {
		case o.op.OperationId == "":
			t.Errorf("%s has no operationId", route)
		case dup:
			t.Errorf("%s and %s share operationId %s", prev, route, o.op.OperationId)
		}
		ids[o.op.OperationId] = route
		if o.op.Responses == nil || o.op.Responses.Codes.Len() == 0 {
			t.Errorf("%s documents no response", route)
		}
	}
}

// TestOpenAPIListsEveryRoute is the contract of the document: it lists exactly the routes
// the app server registers, found by running routes.Register itself.
func TestOpenAPIListsEveryRoute(t *testing.T) {
	routes, mux := registeredRoutes(t)
	_, model := servedDocument(t, mux)
	documented := documentedRoutes(model)
	for _, r := range routes {
		if _, ok := documented[r]; !ok {
			t.Errorf("%s is registered but not in appserver/openapi/openapi.yaml", r)
		}
	}
	for r := range documented {
		if !slices.Contains(routes, r) {
			t.Errorf("%s is in appserver/openapi/openapi.yaml but not registered", r)
		}
	}
}

// TestOpenAPIMatchesAnonymousAnswers calls every route of a running app server without a
// user: a route answers 401 exactly when the document says it needs a token, and every
// answer (status, headers, body) is one the document describes.
func TestOpenAPIMatchesAnonymousAnswers(t *testing.T) {
	routes, mux := registeredRoutes(t)
	doc, model := servedDocument(t, mux)
	documented := documentedRoutes(model)
	v, errs := validator.NewValidator(doc)
	if len(errs) > 0 {
		t.Fatalf("validator: %v", errs)
	}
	db := testenv.NewDatabase(t)
	addr := testenv.FreeAddr(t)
	testenv.Start(t, []string{"APP_ADDR=" + addr, "APP_METRICS_ADDR=" + testenv.FreeAddr(t),
		"DATABASE_URL=" + db.PrimaryURL, "DATABASE_REPLICA_URLS=" + db.ReplicaURL, "MIGRATE_ON_START=true"},
		testenv.Binary(t, "appserver"))
	base := "http://" + addr
	testenv.WaitHTTP(t, base+"/v1/health")

	// Path parameters name nothing that exists: ids and numbers 1, an unknown handle.
	param := regexp.MustCompile(`\{[^}]+\}`)
	for _, route := range routes {
		o, ok := documented[route]
		if !ok {
			continue // TestOpenAPIListsEveryRoute reports it
		}
		method, path, _ := strings.Cut(route, " ")
		path = param.ReplaceAllStringFunc(path, func(p string) string {
			if p == "{handle}" {
				return "nobody_here"
			}
			return "1"
		})
		t.Run(route, func(t *testing.T) {
			req, err := http.NewRequest(method, base+path, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			resp.Body = io.NopCloser(bytes.NewReader(body))
			if anon := o.anonymous(model); (resp.StatusCode == http.StatusUnauthorized) == anon {
				t.Errorf("anonymous %s %s = %d, but the document says a token is %s", method, path, resp.StatusCode,
					map[bool]string{true: "optional", false: "required"}[anon])
			}
			if ok, verrs := v.ValidateHttpResponse(req, resp); !ok {
				report(t, fmt.Sprintf("answer %d %s is not as documented", resp.StatusCode, bytes.TrimSpace(body)), verrs)
			}
		})
	}
}

// report fails the test with each validation error, and each schema failure in it.
func report(t *testing.T, what string, errs []*verrors.ValidationError) {
	t.Helper()
	for _, e := range errs {
		t.Errorf("%s: %s: %s", what, e.Message, e.Reason)
		for _, f := range e.SchemaValidationErrors {
			t.Errorf("\t%s: %s", f.FieldPath, f.Reason)
		}
	}
}
