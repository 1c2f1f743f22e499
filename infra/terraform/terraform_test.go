// Package terraform checks the Terraform of infra/terraform without AWS and without
// downloading providers (terraform init cannot reach the provider registry here):
// terraform fmt, then a parse of every file with HCL and checks of every reference, every
// module call and every terraform.tfvars, then the seed's requirements on the values each
// environment sets, the IAM policies the Terraform attaches, and the environment variables
// it passes to the containers.
package terraform

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/tryfunc"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"

	appsecrets "github.com/muejam/edge/appserver/secrets"
	"github.com/muejam/edge/internal/testenv"
	"github.com/muejam/edge/internal/testenv/caddyfileread"
)

const (
	modulesDir      = "modules"
	environmentsDir = "environments"
	bootstrapDir    = "bootstrap"
	policiesDir     = "../iam-policies"
	edgeCaddyfile   = "../../caddyfiles/production.Caddyfile" // what docker/edge.Dockerfile bakes into the image
	tfvarsFile      = "terraform.tfvars"
)

// environments are the seed's three environments, each a directory of environmentsDir.
var environments = []string{"dev", "staging", "production"}

// rootDir holds the root module every environment shares: each environment's sharedFiles
// are links to it, so the environments differ only in terraform.tfvars and backend.tf.
const rootDir = "root"

// sharedFiles are the files of rootDir that every environment links.
var sharedFiles = []string{"main.tf", "variables.tf", "outputs.tf"}

// moduleMeta are the arguments of a module block that are not variables of the module.
var moduleMeta = []string{"source", "version", "count", "for_each", "providers", "depends_on"}

// builtinRoots are the roots of references that name no variable, local, module or resource.
var builtinRoots = []string{"count", "each", "path", "self", "terraform"}

// tfModule is one directory of .tf files: a module or an environment (a root module).
type tfModule struct {
	dir       string
	variables map[string]*hclsyntax.Block // by name
	locals    map[string]hclsyntax.Expression
	resources map[string]*hclsyntax.Block // by TYPE.NAME
	data      map[string]*hclsyntax.Block // by TYPE.NAME
	modules   map[string]*hclsyntax.Block // by name
	outputs   map[string]*hclsyntax.Block // by name
	moved     []*hclsyntax.Block          // the moved blocks
	terraform []*hclsyntax.Block          // the terraform blocks
	bodies    []*hclsyntax.Body           // one per file
}

// TestFormat runs terraform fmt -check over infra/terraform, or OpenTofu's tofu fmt, which
// formats the same, where there is no terraform.
func TestFormat(t *testing.T) {
	var bin string
	for _, name := range []string{"terraform", "tofu"} {
		if path, err := exec.LookPath(name); err == nil {
			bin = path
			break
		}
	}
	if bin == "" {
		// make test builds a pinned OpenTofu there when neither is on PATH (scripts/tofu.sh).
		bin = filepath.Join("..", "..", ".run", "tools", "bin", "tofu")
		if _, err := os.Stat(bin); err != nil {
			t.Fatal("neither terraform nor tofu is on PATH, nor .run/tools/bin/tofu: run scripts/tofu.sh (make test does)")
		}
	}
	out, err := exec.Command(bin, "fmt", "-check", "-recursive", "-diff", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("%s fmt -check -recursive infra/terraform: %v; run %[1]s fmt -recursive infra/terraform\n%s", filepath.Base(bin), err, out)
	}
}

// TestReferences checks every module and environment: every var., local., module., data. and
// resource reference names something declared (and module.NAME.OUTPUT an output of the
// module), every local module source exists, every module call passes only variables of the
// module and all its required ones, every moved block moves a resource the module no longer
// declares to one it or a module it calls does, and every file() names an existing file.
func TestReferences(t *testing.T) {
	for _, m := range loadAll(t) {
		t.Run(m.dir, func(t *testing.T) {
			checkReferences(t, m)
			checkModuleCalls(t, m)
			checkMoved(t, m)
			for _, path := range fileCalls(t, m) {
				if _, err := os.Stat(path); err != nil {
					t.Errorf("%s: file(%q): %v", m.dir, path, err)
				}
			}
		})
	}
}

// TestProvidersPinned checks that every module and environment pins the version of each
// provider it requires.
func TestProvidersPinned(t *testing.T) {
	for _, m := range loadAll(t) {
		var found bool
		for _, tf := range m.terraform {
			for _, b := range tf.Body.Blocks {
				if b.Type != "required_providers" {
					continue
				}
				for name, attr := range b.Body.Attributes {
					found = true
					items := objectItems(attr.Expr)
					if items["source"] == nil || items["version"] == nil {
						t.Errorf("%s: required provider %s needs a source and a version", m.dir, name)
					}
				}
			}
		}
		if !found {
			t.Errorf("%s: no required_providers", m.dir)
		}
	}
}

// TestEnvironments checks the layout of each environment: the files the issue names, the
// shared files linked from root/, terraform.tfvars setting every required
// variable and only declared ones, and a state backend of its own in S3 with a DynamoDB lock,
// which the bootstrap creates.
func TestEnvironments(t *testing.T) {
	backends := map[string]string{}
	bootstrap := loadModule(t, bootstrapDir)
	for _, env := range environments {
		dir := filepath.Join(environmentsDir, env)
		for _, name := range append(slices.Clone(sharedFiles), tfvarsFile, "backend.tf") {
			if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(sharedFiles, name) {
				continue
			}
			if link, err := os.Readlink(filepath.Join(dir, name)); err != nil || link != filepath.Join("..", "..", rootDir, name) {
				t.Errorf("%s must be a link to %s/%s (got %q, %v): the environments share it; put the difference in %s",
					filepath.Join(dir, name), rootDir, name, link, err, tfvarsFile)
			}
		}

		m := loadModule(t, dir)
		vars := tfvars(t, dir)
		for name := range vars {
			if _, ok := m.variables[name]; !ok {
				t.Errorf("%s/%s sets %s, which variables.tf does not declare", dir, tfvarsFile, name)
			}
		}
		for name, v := range m.variables {
			if _, set := vars[name]; !set && v.Body.Attributes["default"] == nil {
				t.Errorf("%s/%s does not set the required variable %s", dir, tfvarsFile, name)
			}
		}
		if got := vars["environment"]; got.Type() != cty.String || got.AsString() != env {
			t.Errorf("%s/%s: environment = %#v, want %q", dir, tfvarsFile, got, env)
		}

		backend := s3Backend(t, m)
		for _, attr := range []string{"bucket", "key", "dynamodb_table"} {
			v, ok := backend[attr]
			if !ok || !strings.Contains(v.AsString(), env) {
				t.Errorf("%s: the s3 backend's %s must name the environment %s", dir, attr, env)
				continue
			}
			if other, dup := backends[attr+"="+v.AsString()]; dup {
				t.Errorf("%s and %s share the backend %s %q", other, env, attr, v.AsString())
			}
			backends[attr+"="+v.AsString()] = env
		}
		if v, ok := backend["encrypt"]; !ok || v.False() {
			t.Errorf("%s: the s3 backend must set encrypt = true", dir)
		}

		ctx := evalContext(t, bootstrap, nil)
		ctx.Variables["each"] = cty.ObjectVal(map[string]cty.Value{"key": cty.StringVal(env)})
		made := map[string]cty.Value{
			"bucket":         eval(t, resourceAttr(t, bootstrap, "aws_s3_bucket.state", "bucket"), ctx),
			"dynamodb_table": eval(t, resourceAttr(t, bootstrap, "aws_dynamodb_table.lock", "name"), ctx),
			"region":         ctx.Variables["var"].GetAttr("region"),
		}
		for attr, v := range made {
			if !backend[attr].RawEquals(v) {
				t.Errorf("%s: the s3 backend's %s is %s, but %s makes %s", dir, attr, show(backend[attr]), bootstrapDir, show(v))
			}
		}
		if !slices.ContainsFunc(ctx.Variables["var"].GetAttr("environments").AsValueSlice(), cty.StringVal(env).RawEquals) {
			t.Errorf("%s: environments does not default to include %s", bootstrapDir, env)
		}
	}
}

// TestSeedRequirements checks the values of the seed's tables in each environment:
// environments (dev single instance, debug logging, no CDN; staging reduced but with CDN and
// full monitoring; production HA), scaling (min 2, max 20, 70 % CPU) and backups (Multi-AZ,
// two read replicas, 30 days of point-in-time recovery, cross-region replication), and that
// the modules turn those values into the resources that implement them.
func TestSeedRequirements(t *testing.T) {
	type want map[string]cty.Value
	n, yes, no := cty.NumberIntVal, cty.True, cty.False
	services := []string{"appserver", "edge"}
	cases := []struct {
		env     string
		modules map[string]want // module => argument => value
		count   map[string]int  // module => count
		appEnv  map[string]string
	}{
		{
			env: "dev",
			modules: map[string]want{
				"appserver": {"desired_count": n(1), "min_capacity": n(1), "max_capacity": n(1)},
				"edge":      {"desired_count": n(1), "min_capacity": n(1), "max_capacity": n(1)},
				"rds":       {"multi_az": no, "replica_count": n(0)},
				"valkey":    {"cluster_mode": no, "replicas_per_shard": n(0)},
			},
			count:  map[string]int{"cloudfront": 0},
			appEnv: map[string]string{"LOG_LEVEL": "debug"},
		},
		{
			env: "staging",
			modules: map[string]want{
				"appserver": {"desired_count": n(2), "min_capacity": n(2), "cpu_target": n(70)},
				"edge":      {"desired_count": n(2), "min_capacity": n(2), "cpu_target": n(70)},
				"rds":       {"backup_replication": no},
			},
			count: map[string]int{"cloudfront": 1},
		},
		{
			env: "production",
			modules: map[string]want{
				"appserver": {"min_capacity": n(2), "max_capacity": n(20), "cpu_target": n(70)},
				"edge":      {"min_capacity": n(2), "max_capacity": n(20), "cpu_target": n(70)},
				"rds": {"multi_az": yes, "replica_count": n(2), "backup_retention_days": n(30),
					"backup_replication": yes},
				"valkey": {"cluster_mode": yes},
			},
			count: map[string]int{"cloudfront": 1},
		},
	}
	for _, c := range cases {
		t.Run(c.env, func(t *testing.T) {
			dir := filepath.Join(environmentsDir, c.env)
			m := loadModule(t, dir)
			ctx := evalContext(t, m, tfvars(t, dir))
			for mod, args := range c.modules {
				for arg, w := range args {
					if got := moduleArg(t, m, ctx, mod, arg); !got.RawEquals(w) {
						t.Errorf("%s: module %s: %s = %s, want %s", dir, mod, arg, show(got), show(w))
					}
				}
			}
			for mod, w := range c.count {
				if got := moduleArg(t, m, ctx, mod, "count"); !got.RawEquals(cty.NumberIntVal(int64(w))) {
					t.Errorf("%s: module %s: count = %s, want %d", dir, mod, show(got), w)
				}
			}
			items := objectItems(m.modules["appserver"].Body.Attributes["environment"].Expr)
			for name, w := range c.appEnv {
				expr, ok := items[name]
				if !ok {
					t.Errorf("%s: the app server's environment does not set %s", dir, name)
					continue
				}
				if got := eval(t, expr, ctx); !got.RawEquals(cty.StringVal(w)) {
					t.Errorf("%s: the app server's %s = %s, want %q", dir, name, show(got), w)
				}
			}
			vars := ctx.Variables["var"]
			monitored := vars.GetAttr("container_insights").True() && vars.GetAttr("alerting").True()
			if c.env != "dev" && !monitored {
				t.Errorf("%s: full monitoring: container_insights and alerting must be true", dir)
			}
			if c.env == "production" && vars.GetAttr("backup_region").RawEquals(vars.GetAttr("region")) {
				t.Errorf("%s: multi-region backup: backup_region must differ from region", dir)
			}
			for _, svc := range services {
				if got := moduleArg(t, m, ctx, svc, "max_capacity"); got.LessThan(moduleArg(t, m, ctx, svc, "min_capacity")).True() {
					t.Errorf("%s: module %s: max_capacity below min_capacity", dir, svc)
				}
			}
		})
	}

	// The modules wire those arguments to the resources that implement them.
	wiring := []struct {
		module, resource string
		path             []string // nested blocks, then the attribute
		want             string   // a reference or a quoted literal
	}{
		{"ecs-service", "aws_appautoscaling_target.this", []string{"min_capacity"}, "var.min_capacity"},
		{"ecs-service", "aws_appautoscaling_target.this", []string{"max_capacity"}, "var.max_capacity"},
		{"ecs-service", "aws_appautoscaling_policy.cpu", []string{"target_tracking_scaling_policy_configuration", "target_value"}, "var.cpu_target"},
		{"ecs-service", "aws_appautoscaling_policy.cpu", []string{"target_tracking_scaling_policy_configuration", "predefined_metric_specification", "predefined_metric_type"}, `"ECSServiceAverageCPUUtilization"`},
		{"rds", "aws_db_instance.primary", []string{"multi_az"}, "var.multi_az"},
		{"rds", "aws_db_instance.primary", []string{"backup_retention_period"}, "var.backup_retention_days"},
		{"rds", "aws_db_instance.replica", []string{"count"}, "var.replica_count"},
		{"rds", "aws_db_instance.replica", []string{"replicate_source_db"}, "aws_db_instance.primary.identifier"},
		{"rds", "aws_db_instance_automated_backups_replication.this", []string{"retention_period"}, "var.backup_retention_days"},
		{"cloudfront", "aws_cloudfront_distribution.this", []string{"web_acl_id"}, "aws_wafv2_web_acl.this.arn"},
	}
	for _, w := range wiring {
		m := loadModule(t, filepath.Join(modulesDir, w.module))
		block, ok := m.resources[w.resource]
		if !ok {
			t.Errorf("module %s has no resource %s", w.module, w.resource)
			continue
		}
		if got := exprAt(block.Body, w.path); got != w.want {
			t.Errorf("module %s: %s.%s = %s, want %s", w.module, w.resource, strings.Join(w.path, "."), got, w.want)
		}
	}
}

// TestPolicies checks every IAM policy in infra/iam-policies: the Terraform of every
// environment attaches it with file() (so what is reviewed is what is deployed), and it is
// least privilege: Allow statements only, no wildcard in any action, every resource under
// muejam (muejam/..., muejam-...), except "*" for the few actions that AWS authorizes on no
// resource.
func TestPolicies(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(policiesDir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no policy in %s (%v)", policiesDir, err)
	}
	for _, env := range environments {
		used := fileCalls(t, loadModule(t, filepath.Join(environmentsDir, env)))
		for _, f := range files {
			abs, _ := filepath.Abs(f)
			if !slices.Contains(used, abs) {
				t.Errorf("%s is not attached by environments/%s: attach it with file() or remove it", f, env)
			}
		}
	}
	for _, f := range files {
		checkPolicy(t, f)
	}
}

// TestContainerEnvironment checks that the environment variables the Terraform passes to the
// app server are exactly ones appserver/config.go reads, that none of the app server's
// loopback defaults is left in place, and that the edge gets exactly the variables its
// Caddyfile (caddyfiles/production.Caddyfile, baked into the image) reads, but those of
// edgeLeftAtDefault: each as plain environment or as a secret ECS injects, never both;
// edgeSecretNames as secrets; and a secret only where the Caddyfile reads it at run time
// ({env.NAME}), never at parse time ({$NAME}), which would write its value into the adapted
// config. The app server's TRUSTED_EDGE_CIDRS, whose default is loopback only, is set too.
func TestContainerEnvironment(t *testing.T) {
	read := testenv.AppServerEnv(t)
	edgeRead := caddyfileread.Env(t, edgeCaddyfile)
	if len(edgeRead) == 0 {
		t.Fatalf("%s reads no environment variable", edgeCaddyfile)
	}
	for _, env := range environments {
		dir := filepath.Join(environmentsDir, env)
		m := loadModule(t, dir)
		app := containerEnv(t, m, "appserver")
		for name := range app {
			if _, ok := read[name]; !ok {
				t.Errorf("%s passes %s to the app server, which reads only %v (%s)", dir, name, slices.Sorted(maps.Keys(read)), testenv.AppServerConfig)
			}
		}
		for name, def := range read {
			if strings.Contains(def, "127.0.0.1") && !app[name] {
				t.Errorf("%s does not set %s for the app server, whose default %q is loopback", dir, name, def)
			}
		}
		// Its default (127.0.0.0/8,::1/128) is not a string literal of defaultConfig.
		if !app["TRUSTED_EDGE_CIDRS"] {
			t.Errorf("%s does not set TRUSTED_EDGE_CIDRS for the app server, whose default trusts loopback only", dir)
		}
		edgeEnv, edgeSecrets := containerEnv(t, m, "edge"), containerSecrets(t, m, "edge")
		for name := range edgeEnv {
			if _, ok := edgeRead[name]; !ok {
				t.Errorf("%s passes %s to the edge, which %s does not read", dir, name, edgeCaddyfile)
			}
			if edgeSecrets[name] {
				t.Errorf("%s passes %s to the edge both as environment and as a secret", dir, name)
			}
		}
		for name := range edgeSecrets {
			switch edgeRead[name] {
			case 0:
				t.Errorf("%s passes the secret %s to the edge, which %s does not read", dir, name, edgeCaddyfile)
			case caddyfileread.ParseTime:
				t.Errorf("%s reads the secret %s as {$%[2]s}, at parse time: its value would be in the adapted config; read it as {env.%[2]s}", edgeCaddyfile, name)
			}
		}
		for name := range edgeRead {
			if _, ok := edgeLeftAtDefault[name]; ok {
				if edgeEnv[name] || edgeSecrets[name] {
					t.Errorf("%s passes %s to the edge, which should keep the Caddyfile's default: %s", dir, name, edgeLeftAtDefault[name])
				}
				continue
			}
			if !edgeEnv[name] && !edgeSecrets[name] {
				t.Errorf("%s does not pass %s to the edge, which %s reads", dir, name, edgeCaddyfile)
			}
		}
		for _, name := range edgeSecretNames {
			if !edgeSecrets[name] {
				t.Errorf("%s: the edge's %s must be a secret (the ecs-service module's secrets), not plain environment", dir, name)
			}
		}
	}
}

// edgeSecretNames are the variables of the edge that ECS injects from Secrets Manager: the
// pseudonym key of its access logs, Valkey's AUTH token, the CDN origin secret and the key of
// the read-your-writes tokens. Its execution role may read these secrets and no other.
var edgeSecretNames = []string{"PII_PSEUDONYM_KEY", "VALKEY_PASSWORD", "CDN_ORIGIN_SECRET", "READ_YOUR_WRITES_KEY"}

// edgeLeftAtDefault are the variables production.Caddyfile reads that the edge task leaves
// unset on purpose, each with the reason; TestEdgeTask checks the default is what production
// needs.
var edgeLeftAtDefault = map[string]string{
	"EDGE_ADMIN_ADDR":               "the admin API (config, purges, breakers) listens on the task's loopback only",
	"READ_YOUR_WRITES_KEY_PREVIOUS": "set only during a rotation of the read-your-writes key (docs/operators.md): unset, read_your_writes ignores it",
}

// edgeMetricsPort is the port of the edge's metrics listener in every environment: the task's
// port mapping named metrics, the monitoring group's way in (modules/network) and what
// infra/monitoring/prometheus.yml scrapes.
const edgeMetricsPort = 9180

// TestEdgeTask checks the values the edge task gets in each environment, and
// production.Caddyfile read with exactly that environment: the admin API on loopback
// (EDGE_ADMIN_ADDR unset, the Caddyfile's default) and served by no site; a metrics-only
// listener on a non-loopback interface, on the task's metrics_port (edgeMetricsPort); the
// site on the task's container port, the load balancer's target port, on a non-loopback
// interface; the edge tier's security group open to exactly those two ports, the first to the
// load balancer, the second to the monitoring group; EDGE_EXPECTED_NODES the edge's desired
// count, an L1 cache that fits the task's memory, the app server, Valkey and the secrets from
// the modules that make them; and that the ecs-service module injects its secrets into the
// container and lets the execution role read exactly those.
func TestEdgeTask(t *testing.T) {
	network := loadModule(t, filepath.Join(modulesDir, "network"))
	flows := eval(t, network.locals["flows"], nil)
	for _, env := range environments {
		dir := filepath.Join(environmentsDir, env)
		m := loadModule(t, dir)
		ctx := deployedContext(t, m, dir)
		items := objectItems(m.modules["edge"].Body.Attributes["environment"].Expr)
		value := func(name string) string {
			t.Helper()
			expr, ok := items[name]
			if !ok {
				t.Fatalf("%s: the edge's environment does not set %s", dir, name)
			}
			return eval(t, expr, ctx).AsString()
		}
		taskEnv := map[string]string{}
		for name := range items {
			taskEnv[name] = value(name)
		}

		metrics := moduleArg(t, m, ctx, "edge", "metrics_port")
		if !metrics.RawEquals(cty.NumberIntVal(edgeMetricsPort)) {
			t.Errorf("%s: the edge's metrics_port = %s, want %d", dir, show(metrics), edgeMetricsPort)
		}
		sitePort := moduleArg(t, m, ctx, "edge", "container_port")
		if got := moduleArg(t, m, ctx, "alb", "target_port"); !got.RawEquals(sitePort) {
			t.Errorf("%s: the load balancer's target_port %s is not the edge's container_port %s", dir, show(got), show(sitePort))
		}
		if admin, ok := taskEnv["EDGE_ADMIN_ADDR"]; ok && !loopbackListen(admin) {
			t.Errorf("%s: EDGE_ADMIN_ADDR = %q: the admin API must listen on loopback only", dir, admin)
		}

		// The Caddyfile as the task runs it.
		cf := readCaddyfile(t, edgeCaddyfile, taskEnv)
		if !loopbackListen(cf.Admin) {
			t.Errorf("%s: with the task's environment, %s's admin API listens on %q, want loopback only (%s)", dir, edgeCaddyfile, cf.Admin, edgeLeftAtDefault["EDGE_ADMIN_ADDR"])
		}
		var metricsSites, otherSites int
		for _, site := range cf.Sites {
			onlyMetrics := site.MetricsOnly()
			want := show(sitePort)
			if onlyMetrics {
				metricsSites++
				want = show(metrics)
			} else {
				otherSites++
			}
			for _, addr := range site.Listen {
				_, port, err := net.SplitHostPort(addr)
				if err != nil || port != want {
					t.Errorf("%s: %s site %s listens on %s, want port %s (the task's %s)", dir, edgeCaddyfile, site.Key, addr, want, map[bool]string{true: "metrics_port", false: "container_port"}[onlyMetrics])
				}
				if loopbackListen(addr) {
					t.Errorf("%s: %s site %s listens on %q with the task's environment: unreachable from the %s", dir, edgeCaddyfile, site.Key, addr, map[bool]string{true: "monitoring group", false: "load balancer"}[onlyMetrics])
				}
				if port == portOf(cf.Admin) {
					t.Errorf("%s: %s site %s listens on the admin API's port %s", dir, edgeCaddyfile, site.Key, port)
				}
			}
		}
		if metricsSites != 1 || otherSites != 1 {
			t.Errorf("%s: %s has %d metrics-only sites and %d others, want one of each", dir, edgeCaddyfile, metricsSites, otherSites)
		}

		// The edge tier admits the load balancer to the site and the monitoring group to the
		// metrics listener, nothing else (not the admin port).
		into := map[string]string{}
		for it := flows.ElementIterator(); it.Next(); {
			if _, f := it.Element(); f.GetAttr("to").AsString() == "edge" {
				into[f.GetAttr("from").AsString()] = show(f.GetAttr("port"))
			}
		}
		if want := map[string]string{"alb": show(sitePort), "monitoring": show(metrics)}; !maps.Equal(into, want) {
			t.Errorf("%s: flows into the edge tier (from => port) %v, want %v", network.dir, into, want)
		}

		if got, want := value("EDGE_EXPECTED_NODES"), show(moduleArg(t, m, ctx, "edge", "desired_count")); got != want {
			t.Errorf("%s: EDGE_EXPECTED_NODES = %q, want the edge's desired_count %s", dir, got, want)
		}
		l1 := value("EDGE_CACHE_L1")
		mib, err := strconv.Atoi(strings.TrimSuffix(l1, "MiB"))
		memory, _ := moduleArg(t, m, ctx, "edge", "memory").AsBigFloat().Int64()
		if err != nil || !strings.HasSuffix(l1, "MiB") || mib <= 0 || int64(mib) > memory/2 {
			t.Errorf("%s: EDGE_CACHE_L1 = %q, want NMiB of at most half the task's %d MiB", dir, l1, memory)
		}

		for _, c := range []struct{ attr, name, want string }{
			{"environment", "APP_UPSTREAMS", "module.appserver.service_connect_address"},
			{"environment", "VALKEY_ADDR", "module.valkey.address"},
			{"secrets", "PII_PSEUDONYM_KEY", "module.secrets.pii_pseudonym_key_secret_arn"},
			{"secrets", "VALKEY_PASSWORD", "module.secrets.valkey_auth_token_secret_arn"},
			{"secrets", "CDN_ORIGIN_SECRET", "module.secrets.cdn_origin_secret_arn"},
			{"secrets", "READ_YOUR_WRITES_KEY", "module.secrets.read_your_writes_key_secret_arn"},
		} {
			attr, ok := m.modules["edge"].Body.Attributes[c.attr]
			if !ok {
				t.Errorf("%s: the edge sets no %s", dir, c.attr)
				continue
			}
			expr, ok := objectItems(attr.Expr)[c.name].(*hclsyntax.ScopeTraversalExpr)
			if got := "<not a reference>"; !ok || show(expr.Traversal) != c.want {
				if ok {
					got = show(expr.Traversal)
				}
				t.Errorf("%s: the edge's %s %s = %s, want %s", dir, c.attr, c.name, got, c.want)
			}
		}
	}

	// The module puts var.secrets into the container definition and lets the execution role
	// read exactly those secrets (its task definition and roles are modules/ecs-task's).
	mod := serviceTask(t)
	def := objectItems(resourceAttr(t, mod, "aws_ecs_task_definition.this", "container_definitions"))
	if expr, ok := def["secrets"]; !ok || !slices.ContainsFunc(expr.Variables(), func(tr hcl.Traversal) bool { return show(tr) == "var.secrets" }) {
		t.Errorf("%s: the container definition does not set secrets from var.secrets", mod.dir)
	}
	for _, secrets := range []map[string]string{
		{},
		{"PII_PSEUDONYM_KEY": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:muejam/production/pii-pseudonym-key-AbCdEf"},
		{
			"PII_PSEUDONYM_KEY": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:muejam/production/pii-pseudonym-key-AbCdEf",
			"VALKEY_PASSWORD":   "arn:aws:secretsmanager:eu-west-1:123456789012:secret:muejam/production/valkey-auth-token-GhIjKl",
		},
		{"A": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:muejam/dev/b-123456", "B": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:muejam/dev/a-654321"},
	} {
		vals := map[string]cty.Value{}
		for k, v := range secrets {
			vals[k] = cty.StringVal(v)
		}
		secretsVal := cty.MapValEmpty(cty.String)
		if len(vals) > 0 {
			secretsVal = cty.MapVal(vals)
		}
		ctx := evalContext(t, mod, map[string]cty.Value{"secrets": secretsVal})
		ctx.Functions = tfFunctions
		count := eval(t, resourceAttr(t, mod, "aws_iam_role_policy.execution_secrets", "count"), ctx)
		if want := cty.NumberIntVal(int64(min(len(secrets), 1))); !count.RawEquals(want) {
			t.Errorf("%s: with %d secrets, aws_iam_role_policy.execution_secrets has count %s, want %s", mod.dir, len(secrets), show(count), show(want))
		}
		if len(secrets) == 0 {
			continue
		}
		policy := eval(t, resourceAttr(t, mod, "aws_iam_role_policy.execution_secrets", "policy"), ctx).AsString()
		where := mod.dir + ": aws_iam_role_policy.execution_secrets"
		p := checkPolicyDoc(t, where, []byte(policy))
		var actions, resources []string
		for _, st := range p.Statement {
			actions = append(actions, st.Action...)
			resources = append(resources, st.Resource...)
		}
		if !slices.Equal(actions, []string{"secretsmanager:GetSecretValue"}) {
			t.Errorf("%s: actions %v, want only secretsmanager:GetSecretValue", where, actions)
		}
		if want := slices.Sorted(maps.Values(secrets)); !slices.Equal(slices.Sorted(slices.Values(resources)), want) {
			t.Errorf("%s: resources %v, want exactly the injected secrets %v", where, resources, want)
		}
	}
}

// TestValkeyTLSAndAuth checks Valkey's in-transit encryption and AUTH in each environment:
// the replication group requires TLS and takes its AUTH token from the valkey module's
// sensitive auth_token, which every environment sets from the secrets module's
// random_password, stored as the plain string secret muejam/ENV/valkey-auth-token; the edge
// gets that secret as VALKEY_PASSWORD, injected by ECS through its execution role, and the app
// server a reference to it (aws-sm:muejam/ENV/valkey-auth-token) that its task role may
// resolve; both get VALKEY_TLS=on and VALKEY_CLUSTER on exactly when the environment runs
// Valkey in cluster mode.
func TestValkeyTLSAndAuth(t *testing.T) {
	valkey := loadModule(t, filepath.Join(modulesDir, "valkey"))
	const group = "aws_elasticache_replication_group.this"
	for attr, want := range map[string]cty.Value{
		"transit_encryption_enabled": cty.True,
		"transit_encryption_mode":    cty.StringVal("required"),
		"at_rest_encryption_enabled": cty.True,
	} {
		if got := eval(t, resourceAttr(t, valkey, group, attr), nil); !got.RawEquals(want) {
			t.Errorf("%s: %s.%s = %s, want %s", valkey.dir, group, attr, show(got), show(want))
		}
	}
	if got := exprAt(valkey.resources[group].Body, []string{"auth_token"}); got != "var.auth_token" {
		t.Errorf("%s: %s.auth_token = %s, want var.auth_token", valkey.dir, group, got)
	}
	token, ok := valkey.variables["auth_token"]
	switch {
	case !ok:
		t.Fatalf("%s: no variable auth_token", valkey.dir)
	case token.Body.Attributes["default"] != nil:
		t.Errorf("%s: variable auth_token must have no default: every environment passes the secrets module's token", valkey.dir)
	case token.Body.Attributes["sensitive"] == nil || !eval(t, token.Body.Attributes["sensitive"].Expr, nil).True():
		t.Errorf("%s: variable auth_token must be sensitive", valkey.dir)
	}
	// Its validation holds ElastiCache's rules for an AUTH token.
	for tok, want := range map[string]bool{
		strings.Repeat("aZ09", 4):          true,
		strings.Repeat("aZ09", 16):         true,
		strings.Repeat("aZ09", 32):         true,
		"!#$&'()*+,-.:;<=>?[]^_`{|}~":      true,
		strings.Repeat("a", 15):            false,
		strings.Repeat("a", 129):           false,
		strings.Repeat("a", 16) + "@":      false,
		strings.Repeat("a", 16) + `"`:      false,
		strings.Repeat("a", 16) + "/":      false,
		strings.Repeat("a", 16) + "%":      false,
		strings.Repeat("a", 16) + " ":      false,
		strings.Repeat("a", 16) + "\u00e9": false,
		strings.Repeat("a", 16) + "\n":     false,
	} {
		ctx := evalContext(t, valkey, map[string]cty.Value{"auth_token": cty.StringVal(tok)})
		ctx.Functions = tfFunctions
		ok := true
		for _, b := range token.Body.Blocks {
			if b.Type == "validation" {
				ok = ok && eval(t, b.Body.Attributes["condition"].Expr, ctx).True()
			}
		}
		if ok != want {
			t.Errorf("%s: variable auth_token accepts %q: %v, want %v", valkey.dir, tok, ok, want)
		}
	}

	// The secrets module generates the token, stores it as a plain string and hands it out.
	secrets := loadModule(t, filepath.Join(modulesDir, "secrets"))
	const password = "random_password.valkey_auth_token"
	length := eval(t, resourceAttr(t, secrets, password, "length"), nil)
	if length.LessThan(cty.NumberIntVal(16)).True() || length.GreaterThan(cty.NumberIntVal(128)).True() {
		t.Errorf("%s: %s.length = %s, want 16 to 128 (ElastiCache AUTH)", secrets.dir, password, show(length))
	}
	if got := eval(t, resourceAttr(t, secrets, password, "special"), nil); !got.RawEquals(cty.False) {
		t.Errorf("%s: %s.special = %s, want false: letters and digits, none of the characters AUTH refuses", secrets.dir, password, show(got))
	}
	for _, w := range []struct {
		block  *hclsyntax.Block
		where  string
		attr   string
		want   string
		secret bool
	}{
		{secrets.resources["aws_secretsmanager_secret_version.valkey_auth_token"], "aws_secretsmanager_secret_version.valkey_auth_token", "secret_string", password + ".result", false},
		{secrets.resources["aws_secretsmanager_secret_version.valkey_auth_token"], "aws_secretsmanager_secret_version.valkey_auth_token", "secret_id", "aws_secretsmanager_secret.valkey_auth_token.id", false},
		{secrets.outputs["valkey_auth_token"], "output valkey_auth_token", "value", password + ".result", true},
		{secrets.outputs["valkey_auth_token_secret_arn"], "output valkey_auth_token_secret_arn", "value", "aws_secretsmanager_secret_version.valkey_auth_token.arn", false},
		{secrets.outputs["valkey_auth_token_secret_name"], "output valkey_auth_token_secret_name", "value", "aws_secretsmanager_secret.valkey_auth_token.name", false},
	} {
		if w.block == nil {
			t.Errorf("%s: no %s", secrets.dir, w.where)
			continue
		}
		if got := exprAt(w.block.Body, []string{w.attr}); got != w.want {
			t.Errorf("%s: %s: %s = %s, want %s", secrets.dir, w.where, w.attr, got, w.want)
		}
		if sens := w.block.Body.Attributes["sensitive"]; w.secret && (sens == nil || !eval(t, sens.Expr, nil).True()) {
			t.Errorf("%s: %s must be sensitive", secrets.dir, w.where)
		}
	}

	for _, env := range environments {
		t.Run(env, func(t *testing.T) {
			dir := filepath.Join(environmentsDir, env)
			m := loadModule(t, dir)
			ctx := evalContext(t, m, tfvars(t, dir))
			ctx.Functions = maps.Clone(tfFunctions)
			ctx.Functions["file"] = fileFunc

			if got := exprAt(m.modules["valkey"].Body, []string{"auth_token"}); got != "module.secrets.valkey_auth_token" {
				t.Errorf("%s: module valkey: auth_token = %s, want module.secrets.valkey_auth_token", dir, got)
			}

			// What the secrets module makes for this environment, as ARNs Secrets Manager
			// would give them.
			sctx := evalContext(t, secrets, map[string]cty.Value{"environment_name": moduleArg(t, m, ctx, "secrets", "environment_name")})
			name := func(res string) string {
				return eval(t, resourceAttr(t, secrets, "aws_secretsmanager_secret."+res, "name"), sctx).AsString()
			}
			tokenName, keyName, dbName := name("valkey_auth_token"), name("pii_pseudonym_key"), name("database")
			if want := "muejam/" + env + "/valkey-auth-token"; tokenName != want {
				t.Errorf("%s: the Valkey AUTH token secret is %q, want %q", dir, tokenName, want)
			}
			arn := func(name, suffix string) string {
				return fmt.Sprintf("arn:aws:secretsmanager:%s:123456789012:secret:%s-%s", ctx.Variables["var"].GetAttr("region").AsString(), name, suffix)
			}
			tokenARN, keyARN, dbARN := arn(tokenName, "AbCdEf"), arn(keyName, "GhIjKl"), arn(dbName, "MnOpQr")
			ctx.Variables["module"] = cty.ObjectVal(map[string]cty.Value{
				"secrets": cty.ObjectVal(map[string]cty.Value{
					"valkey_auth_token_secret_name": cty.StringVal(tokenName),
					"valkey_auth_token_secret_arn":  cty.StringVal(tokenARN),
					"pii_pseudonym_key_secret_arn":  cty.StringVal(keyARN),
					"cdn_origin_secret_arn":         cty.StringVal(arn(name("cdn_origin_secret"), "StUvWx")),
					"database_secret_name":          cty.StringVal(dbName),

					"read_your_writes_key_secret_arn":  cty.StringVal(arn(name("read_your_writes_key"), "YzAbCd")),
					"read_your_writes_key_secret_name": cty.StringVal(name("read_your_writes_key")),
				}),
			})

			cluster := "off"
			if moduleArg(t, m, ctx, "valkey", "cluster_mode").True() {
				cluster = "on"
			}
			if vars := ctx.Variables["var"]; !moduleArg(t, m, ctx, "valkey", "cluster_mode").RawEquals(vars.GetAttr("valkey_cluster_mode")) {
				t.Errorf("%s: module valkey: cluster_mode is not valkey_cluster_mode", dir)
			}
			for _, svc := range []string{"edge", "appserver"} {
				items := objectItems(m.modules[svc].Body.Attributes["environment"].Expr)
				for name, want := range map[string]string{"VALKEY_CLUSTER": cluster, "VALKEY_TLS": "on"} {
					expr, ok := items[name]
					if !ok {
						t.Errorf("%s: the %s's environment does not set %s", dir, svc, name)
						continue
					}
					if got := eval(t, expr, ctx); !got.RawEquals(cty.StringVal(want)) {
						t.Errorf("%s: the %s's %s = %s, want %q (valkey_cluster_mode = %s)", dir, svc, name, show(got), want, show(moduleArg(t, m, ctx, "valkey", "cluster_mode")))
					}
				}
			}

			// The app server resolves VALKEY_PASSWORD itself: a reference to the whole secret,
			// which its task role may read.
			expr, ok := objectItems(m.modules["appserver"].Body.Attributes["environment"].Expr)["VALKEY_PASSWORD"]
			if !ok {
				t.Fatalf("%s: the app server's environment does not set VALKEY_PASSWORD", dir)
			}
			ref, err := appsecrets.ParseRef(eval(t, expr, ctx).AsString())
			if err != nil || ref.Scheme != appsecrets.SchemeAWSSM || ref.Name != tokenName || ref.Key != "" {
				t.Errorf("%s: the app server's VALKEY_PASSWORD = %s (%v), want aws-sm:%s", dir, show(eval(t, expr, ctx)), err, tokenName)
			}
			taskPolicies := moduleArg(t, m, ctx, "appserver", "task_policies")
			var appDocs []policyDoc
			for it := taskPolicies.ElementIterator(); it.Next(); {
				k, v := it.Element()
				appDocs = append(appDocs, checkPolicyDoc(t, dir+": app server task policy "+k.AsString(), []byte(v.AsString())))
			}
			for secretARN, want := range map[string]bool{tokenARN: true, dbARN: true, keyARN: true} {
				if got := slices.ContainsFunc(appDocs, func(p policyDoc) bool { return policyAllows(p, "secretsmanager:GetSecretValue", secretARN) }); got != want {
					t.Errorf("%s: the app server's task role may read %s: %v, want %v", dir, secretARN, got, want)
				}
			}

			// The edge gets the token injected by ECS; its execution role may read exactly its
			// secrets.
			edgeSecrets := moduleArg(t, m, ctx, "edge", "secrets")
			if got := edgeSecrets.GetAttr("VALKEY_PASSWORD"); !got.RawEquals(cty.StringVal(tokenARN)) {
				t.Errorf("%s: the edge's secret VALKEY_PASSWORD = %s, want the ARN of %s", dir, show(got), tokenName)
			}
			var names []string
			for k := range edgeSecrets.AsValueMap() {
				names = append(names, k)
			}
			if want := slices.Sorted(slices.Values(edgeSecretNames)); !slices.Equal(slices.Sorted(slices.Values(names)), want) {
				t.Errorf("%s: the edge's secrets are %v, want %v", dir, slices.Sorted(slices.Values(names)), want)
			}
			svc := serviceTask(t)
			sctx = evalContext(t, svc, map[string]cty.Value{"secrets": cty.MapVal(edgeSecrets.AsValueMap())})
			sctx.Functions = tfFunctions
			exec := checkPolicyDoc(t, dir+": the edge's read-injected-secrets", []byte(eval(t, resourceAttr(t, svc, "aws_iam_role_policy.execution_secrets", "policy"), sctx).AsString()))
			for secretARN, want := range map[string]bool{tokenARN: true, keyARN: true, dbARN: false} {
				if got := policyAllows(exec, "secretsmanager:GetSecretValue", secretARN); got != want {
					t.Errorf("%s: the edge's execution role may read %s: %v, want %v", dir, secretARN, got, want)
				}
			}
		})
	}
}

// policyAllows evaluates p as IAM does for action on the resource arn: some Allow statement
// has an action pattern and a resource pattern that match, and no Deny statement does. Action
// patterns match case-insensitively, resource patterns exactly; in both * is any run of
// characters and ? one.
func policyAllows(p policyDoc, action, arn string) bool {
	allowed := false
	for _, st := range p.Statement {
		if !slices.ContainsFunc(st.Action, func(pattern string) bool { return actionMatch(pattern, action) }) ||
			!slices.ContainsFunc(st.Resource, func(pattern string) bool { return arnMatch(pattern, arn) }) {
			continue
		}
		if st.Effect == "Deny" {
			return false
		}
		allowed = allowed || st.Effect == "Allow"
	}
	return allowed
}

// arnMatch reports whether an IAM resource pattern (* any run of characters, ? one) matches arn.
func arnMatch(pattern, arn string) bool {
	return regexp.MustCompile("^" + iamWildcards(pattern) + "$").MatchString(arn)
}

// actionMatch reports whether an IAM action pattern (service:Name, * and ? as in arnMatch)
// matches action; IAM compares actions case-insensitively.
func actionMatch(pattern, action string) bool {
	return regexp.MustCompile("(?i)^" + iamWildcards(pattern) + "$").MatchString(action)
}

// iamWildcards returns the regular expression of an IAM pattern: * any run of characters, ?
// one character, everything else literal.
func iamWildcards(pattern string) string {
	return strings.NewReplacer(`\*`, `.*`, `\?`, `.`).Replace(regexp.QuoteMeta(pattern))
}

// tfFunctions are the Terraform functions the tests evaluate expressions with.
var tfFunctions = map[string]function.Function{
	"can":        tryfunc.CanFunc,
	"cidrsubnet": tfCidrSubnetFunc,
	"concat":     stdlib.ConcatFunc,
	"file":       fileFunc,
	"flatten":    stdlib.FlattenFunc,
	"floor":      stdlib.FloorFunc,
	"join":       stdlib.JoinFunc,
	"jsondecode": stdlib.JSONDecodeFunc,
	"jsonencode": stdlib.JSONEncodeFunc,
	"keys":       stdlib.KeysFunc,
	"length":     tfLengthFunc,
	"merge":      stdlib.MergeFunc,
	"one":        tfOneFunc,
	"regex":      stdlib.RegexFunc,
	"replace":    stdlib.ReplaceFunc,
	"sort":       stdlib.SortFunc,
	"startswith": tfStartsWithFunc,
	"tostring":   stdlib.MakeToFunc(cty.String),
	"values":     stdlib.ValuesFunc,
}

// tfOneFunc is Terraform's one: null for an empty list or tuple, else its only element.
var tfOneFunc = function.New(&function.Spec{
	Params: []function.Parameter{{Name: "list", Type: cty.DynamicPseudoType}},
	Type:   function.StaticReturnType(cty.DynamicPseudoType),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		switch n := args[0].LengthInt(); n {
		case 0:
			return cty.NullVal(cty.DynamicPseudoType), nil
		case 1:
			return args[0].Index(cty.NumberIntVal(0)), nil
		default:
			return cty.NilVal, fmt.Errorf("one: %d elements", n)
		}
	},
})

// tfStartsWithFunc is Terraform's startswith(string, prefix).
var tfStartsWithFunc = function.New(&function.Spec{
	Params: []function.Parameter{{Name: "str", Type: cty.String}, {Name: "prefix", Type: cty.String}},
	Type:   function.StaticReturnType(cty.Bool),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		return cty.BoolVal(strings.HasPrefix(args[0].AsString(), args[1].AsString())), nil
	},
})

// tfLengthFunc is Terraform's length: the characters of a string, else the elements of a
// collection (cty's LengthFunc takes collections only).
var tfLengthFunc = function.New(&function.Spec{
	Params: []function.Parameter{{Name: "value", Type: cty.DynamicPseudoType, AllowDynamicType: true}},
	Type:   function.StaticReturnType(cty.Number),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		if args[0].Type() == cty.String {
			return stdlib.Strlen(args[0])
		}
		return stdlib.Length(args[0])
	},
})

// containerEnv returns the names of the environment variables that the module call name of
// m passes to its container (the ecs-service module's environment argument).
func containerEnv(t *testing.T, m *tfModule, name string) map[string]bool {
	t.Helper()
	return moduleMapKeys(t, m, name, "environment")
}

// containerSecrets returns the names of the environment variables that the module call name
// of m has ECS inject from Secrets Manager (the ecs-service module's secrets argument).
func containerSecrets(t *testing.T, m *tfModule, name string) map[string]bool {
	t.Helper()
	return moduleMapKeys(t, m, name, "secrets")
}

// moduleMapKeys returns the keys of the object the module call name of m passes as arg.
func moduleMapKeys(t *testing.T, m *tfModule, name, arg string) map[string]bool {
	t.Helper()
	call, ok := m.modules[name]
	if !ok {
		t.Fatalf("%s: no module %q", m.dir, name)
	}
	names := map[string]bool{}
	if attr, ok := call.Body.Attributes[arg]; ok {
		for k := range objectItems(attr.Expr) {
			names[k] = true
		}
	}
	return names
}

// loadAll loads every module, every environment and the bootstrap of the state backends.
func loadAll(t *testing.T) []*tfModule {
	t.Helper()
	all := []*tfModule{loadModule(t, bootstrapDir)}
	for _, parent := range []string{modulesDir, environmentsDir} {
		entries, err := os.ReadDir(parent)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.IsDir() {
				all = append(all, loadModule(t, filepath.Join(parent, e.Name())))
			}
		}
	}
	if len(all) < len(environments) {
		t.Fatalf("found only %d modules and environments", len(all))
	}
	return all
}

// loadModule parses the .tf files of dir.
func loadModule(t *testing.T, dir string) *tfModule {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.tf"))
	if err != nil || len(files) == 0 {
		t.Fatalf("%s: no .tf files (%v)", dir, err)
	}
	m := &tfModule{
		dir:       dir,
		variables: map[string]*hclsyntax.Block{},
		locals:    map[string]hclsyntax.Expression{},
		resources: map[string]*hclsyntax.Block{},
		data:      map[string]*hclsyntax.Block{},
		modules:   map[string]*hclsyntax.Block{},
		outputs:   map[string]*hclsyntax.Block{},
	}
	parser := hclparse.NewParser()
	for _, path := range files {
		f, diags := parser.ParseHCLFile(path)
		if diags.HasErrors() {
			t.Fatal(diags)
		}
		body := f.Body.(*hclsyntax.Body)
		m.bodies = append(m.bodies, body)
		if len(body.Attributes) > 0 {
			t.Errorf("%s: top-level attributes are not Terraform", path)
		}
		for _, b := range body.Blocks {
			var into map[string]*hclsyntax.Block
			key := strings.Join(b.Labels, ".")
			switch b.Type {
			case "variable":
				into = m.variables
			case "resource":
				into = m.resources
			case "data":
				into = m.data
			case "module":
				into = m.modules
			case "output":
				into = m.outputs
			case "locals":
				for name, attr := range b.Body.Attributes {
					m.locals[name] = attr.Expr
				}
				continue
			case "terraform":
				m.terraform = append(m.terraform, b)
				continue
			case "moved":
				m.moved = append(m.moved, b)
				continue
			case "provider":
				continue
			default:
				t.Errorf("%s: unexpected block %s", path, b.Type)
				continue
			}
			if _, dup := into[key]; dup {
				t.Errorf("%s: %s %s declared twice", path, b.Type, key)
			}
			into[key] = b
		}
	}
	return m
}

// tfvars parses terraform.tfvars of the environment in dir.
func tfvars(t *testing.T, dir string) map[string]cty.Value {
	t.Helper()
	f, diags := hclparse.NewParser().ParseHCLFile(filepath.Join(dir, tfvarsFile))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	attrs, diags := f.Body.JustAttributes()
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	vals := map[string]cty.Value{}
	for name, attr := range attrs {
		vals[name] = eval(t, attr.Expr, nil)
	}
	return vals
}

// notReferences are the arguments whose expressions name types, provider configurations or
// attributes rather than objects of the module, by the type of the block that holds them.
var notReferences = map[string][]string{
	"variable":  {"type"},
	"resource":  {"provider"},
	"data":      {"provider"},
	"module":    {"providers"},
	"lifecycle": {"ignore_changes"},
}

// checkReferences checks every reference in m against its declarations. The terraform
// blocks (versions, backend) hold no references.
func checkReferences(t *testing.T, m *tfModule) {
	t.Helper()
	for _, body := range m.bodies {
		for _, b := range body.Blocks {
			if b.Type == "terraform" || b.Type == "moved" {
				continue
			}
			walkBlock(b, nil, func(blockType string, attr *hclsyntax.Attribute, iterators []string) {
				if slices.Contains(notReferences[blockType], attr.Name) {
					return
				}
				for _, tr := range attr.Expr.Variables() {
					if err := checkTraversal(t, m, tr, iterators); err != "" {
						t.Errorf("%s: %s", tr.SourceRange(), err)
					}
				}
			})
		}
	}
}

// walkBlock calls fn with each attribute of b and of the blocks nested in it, the type of the
// block that holds it, and the names of the iterators of the dynamic blocks around it.
func walkBlock(b *hclsyntax.Block, iterators []string, fn func(string, *hclsyntax.Attribute, []string)) {
	for _, attr := range b.Body.Attributes {
		fn(b.Type, attr, iterators)
	}
	for _, nested := range b.Body.Blocks {
		inner := iterators
		if nested.Type == "dynamic" && len(nested.Labels) == 1 {
			inner = append(slices.Clone(iterators), nested.Labels[0])
		}
		walkBlock(nested, inner, fn)
	}
}

// checkTraversal returns what is wrong with the reference tr in m, or "".
func checkTraversal(t *testing.T, m *tfModule, tr hcl.Traversal, iterators []string) string {
	t.Helper()
	names := attrNames(tr)
	need := func(n int) bool { return len(names) >= n }
	switch root := names[0]; {
	case root == "var":
		if !need(2) || m.variables[names[1]] == nil {
			return fmt.Sprintf("%s: no such variable in %s", show(tr), m.dir)
		}
	case root == "local":
		if !need(2) || m.locals[names[1]] == nil {
			return fmt.Sprintf("%s: no such local in %s", show(tr), m.dir)
		}
	case root == "data":
		if !need(3) || m.data[names[1]+"."+names[2]] == nil {
			return fmt.Sprintf("%s: no such data source in %s", show(tr), m.dir)
		}
	case root == "module":
		if !need(2) || m.modules[names[1]] == nil {
			return fmt.Sprintf("%s: no such module call in %s", show(tr), m.dir)
		}
		if need(3) {
			child := loadModule(t, moduleSource(t, m, names[1]))
			if child.outputs[names[2]] == nil {
				return fmt.Sprintf("%s: module %s has no output %s", show(tr), child.dir, names[2])
			}
		}
	case slices.Contains(builtinRoots, root), slices.Contains(iterators, root):
	default:
		if !need(2) || m.resources[root+"."+names[1]] == nil {
			return fmt.Sprintf("%s: no such resource in %s", show(tr), m.dir)
		}
	}
	return ""
}

// checkModuleCalls checks the module blocks of m against the modules they call.
func checkModuleCalls(t *testing.T, m *tfModule) {
	t.Helper()
	for name, call := range m.modules {
		child := loadModule(t, moduleSource(t, m, name))
		for arg := range call.Body.Attributes {
			if !slices.Contains(moduleMeta, arg) && child.variables[arg] == nil {
				t.Errorf("%s: module %s passes %s, which %s does not declare", m.dir, name, arg, child.dir)
			}
		}
		for v, block := range child.variables {
			if _, ok := call.Body.Attributes[v]; !ok && block.Body.Attributes["default"] == nil {
				t.Errorf("%s: module %s does not pass the required variable %s of %s", m.dir, name, v, child.dir)
			}
		}
	}
}

// checkMoved checks the moved blocks of m: from names a resource (TYPE.NAME) that m no longer
// declares, to one that m declares or, as module.CALL.TYPE.NAME, the module m calls as CALL
// does; both of the same type.
func checkMoved(t *testing.T, m *tfModule) {
	t.Helper()
	for _, b := range m.moved {
		addr := map[string][]string{}
		for _, arg := range []string{"from", "to"} {
			attr, ok := b.Body.Attributes[arg]
			var tr hcl.Traversal
			var diags hcl.Diagnostics
			if ok {
				tr, diags = hcl.AbsTraversalForExpr(attr.Expr)
			}
			if len(b.Body.Attributes) != 2 || !ok || diags.HasErrors() {
				t.Errorf("%s: a moved block takes exactly from and to, both addresses", b.Range())
				return
			}
			addr[arg] = attrNames(tr)
		}
		from, to := addr["from"], addr["to"]
		if len(from) != 2 || from[0] == "module" || from[0] == "data" || m.resources[strings.Join(from, ".")] != nil {
			t.Errorf("%s: moved from %s: want a resource (TYPE.NAME) that %s no longer declares", b.Range(), strings.Join(from, "."), m.dir)
			continue
		}
		target := m
		if len(to) == 4 && to[0] == "module" && m.modules[to[1]] != nil {
			target, to = loadModule(t, moduleSource(t, m, to[1])), to[2:]
		}
		if len(to) != 2 || target.resources[strings.Join(to, ".")] == nil || to[0] != from[0] {
			t.Errorf("%s: moved to %s: no resource %s of the type of %s in %s", b.Range(), strings.Join(addr["to"], "."), strings.Join(to, "."), strings.Join(from, "."), target.dir)
		}
	}
}

// serviceTask returns the module that makes the ecs-service module's image repository, roles,
// logs and task definition, modules/ecs-task as its module call task, after checking that the
// service passes it its own container and role arguments unchanged.
func serviceTask(t *testing.T) *tfModule {
	t.Helper()
	svc := loadModule(t, filepath.Join(modulesDir, "ecs-service"))
	call, ok := svc.modules["task"]
	if !ok {
		t.Fatalf("%s: no module task", svc.dir)
	}
	for _, arg := range []string{"name", "environment_name", "command", "environment", "secrets", "execution_policy", "task_policies"} {
		if got := exprAt(call.Body, []string{arg}); got != "var."+arg {
			t.Errorf("%s: module task: %s = %s, want var.%[2]s", svc.dir, arg, got)
		}
	}
	return loadModule(t, moduleSource(t, svc, "task"))
}

// moduleSource returns the directory of the local module that the module call name of m
// calls; it fails for a registry module, which this repository does not use.
func moduleSource(t *testing.T, m *tfModule, name string) string {
	t.Helper()
	attr, ok := m.modules[name].Body.Attributes["source"]
	if !ok {
		t.Fatalf("%s: module %s has no source", m.dir, name)
	}
	src := eval(t, attr.Expr, nil).AsString()
	if !strings.HasPrefix(src, "./") && !strings.HasPrefix(src, "../") {
		t.Fatalf("%s: module %s: source %q is not a local directory", m.dir, name, src)
	}
	dir := filepath.Join(m.dir, src)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		t.Fatalf("%s: module %s: source %s does not exist", m.dir, name, dir)
	}
	return dir
}

// fileCalls returns the absolute paths of the file() calls of m.
func fileCalls(t *testing.T, m *tfModule) []string {
	t.Helper()
	ctx := evalContext(t, m, nil)
	var paths []string
	for _, body := range m.bodies {
		diags := hclsyntax.VisitAll(body, func(n hclsyntax.Node) hcl.Diagnostics {
			call, ok := n.(*hclsyntax.FunctionCallExpr)
			if !ok || call.Name != "file" || len(call.Args) != 1 {
				return nil
			}
			v, diags := call.Args[0].Value(ctx)
			if diags.HasErrors() || !v.IsKnown() {
				t.Errorf("%s: file() needs a path made of path.module, locals and literals", call.Range())
				return nil
			}
			abs, err := filepath.Abs(v.AsString())
			if err != nil {
				t.Fatal(err)
			}
			paths = append(paths, abs)
			return nil
		})
		if diags.HasErrors() {
			t.Fatal(diags)
		}
	}
	return paths
}

// evalContext returns the values of path.module, of the variables (vars, over the defaults)
// and of the locals of m that follow from them alone (with tfFunctions); everything else is
// unknown to it.
func evalContext(t *testing.T, m *tfModule, vars map[string]cty.Value) *hcl.EvalContext {
	t.Helper()
	all := map[string]cty.Value{}
	for name, b := range m.variables {
		if def, ok := b.Body.Attributes["default"]; ok {
			all[name] = eval(t, def.Expr, nil)
		}
	}
	maps.Copy(all, vars)
	ctx := &hcl.EvalContext{Functions: tfFunctions, Variables: map[string]cty.Value{
		"path": cty.ObjectVal(map[string]cty.Value{"module": cty.StringVal(m.dir)}),
		"var":  cty.ObjectVal(all),
	}}
	ctx.Variables["local"] = cty.EmptyObjectVal
	refreshLocals(m, ctx)
	return ctx
}

// moduleArg evaluates the argument arg of the module call mod of m.
func moduleArg(t *testing.T, m *tfModule, ctx *hcl.EvalContext, mod, arg string) cty.Value {
	t.Helper()
	call, ok := m.modules[mod]
	if !ok {
		t.Fatalf("%s: no module %q", m.dir, mod)
	}
	attr, ok := call.Body.Attributes[arg]
	if !ok {
		t.Fatalf("%s: module %s does not set %s", m.dir, mod, arg)
	}
	return eval(t, attr.Expr, ctx)
}

// resourceAttr returns the expression of the argument attr of the resource res (TYPE.NAME)
// of m.
func resourceAttr(t *testing.T, m *tfModule, res, attr string) hcl.Expression {
	t.Helper()
	block, ok := m.resources[res]
	if !ok {
		t.Fatalf("%s: no resource %s", m.dir, res)
	}
	a, ok := block.Body.Attributes[attr]
	if !ok {
		t.Fatalf("%s: resource %s does not set %s", m.dir, res, attr)
	}
	return a.Expr
}

// eval evaluates expr, which must depend on nothing ctx does not know.
func eval(t *testing.T, expr hcl.Expression, ctx *hcl.EvalContext) cty.Value {
	t.Helper()
	v, diags := expr.Value(ctx)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	return v
}

// objectItems returns the items of the object constructors in expr by key, looking into
// function calls (merge) and both results of conditionals.
func objectItems(expr hcl.Expression) map[string]hclsyntax.Expression {
	items := map[string]hclsyntax.Expression{}
	e, ok := expr.(hclsyntax.Expression)
	if !ok {
		return items
	}
	hclsyntax.VisitAll(e, func(n hclsyntax.Node) hcl.Diagnostics {
		obj, ok := n.(*hclsyntax.ObjectConsExpr)
		if !ok {
			return nil
		}
		for _, item := range obj.Items {
			if key := hcl.ExprAsKeyword(item.KeyExpr); key != "" {
				items[key] = item.ValueExpr
			} else if k, diags := item.KeyExpr.Value(nil); !diags.HasErrors() && k.Type() == cty.String {
				items[k.AsString()] = item.ValueExpr
			}
		}
		return nil
	})
	return items
}

// exprAt returns the attribute at path (nested block types, then the attribute name) of body
// as a reference (var.x) or a quoted literal, or "<missing>".
func exprAt(body *hclsyntax.Body, path []string) string {
	for _, blockType := range path[:len(path)-1] {
		var next *hclsyntax.Body
		for _, b := range body.Blocks {
			if b.Type == blockType {
				next = b.Body
			}
		}
		if next == nil {
			return "<missing>"
		}
		body = next
	}
	attr, ok := body.Attributes[path[len(path)-1]]
	if !ok {
		return "<missing>"
	}
	switch e := attr.Expr.(type) {
	case *hclsyntax.ScopeTraversalExpr:
		return strings.Join(attrNames(e.Traversal), ".")
	case *hclsyntax.TemplateExpr:
		if v, diags := e.Value(nil); !diags.HasErrors() && v.Type() == cty.String {
			return fmt.Sprintf("%q", v.AsString())
		}
	}
	return fmt.Sprintf("<expression at %s>", attr.Expr.Range())
}

// s3Backend returns the literal arguments of the s3 backend of m.
func s3Backend(t *testing.T, m *tfModule) map[string]cty.Value {
	t.Helper()
	for _, tf := range m.terraform {
		for _, b := range tf.Body.Blocks {
			if b.Type == "backend" && len(b.Labels) == 1 && b.Labels[0] == "s3" {
				args := map[string]cty.Value{}
				for name, attr := range b.Body.Attributes {
					args[name] = eval(t, attr.Expr, nil)
				}
				return args
			}
		}
	}
	t.Fatalf("%s: no backend \"s3\"", m.dir)
	return nil
}

// attrNames returns the root name and the attribute names of tr, without index steps:
// module.cloudfront[0].domain_name gives module, cloudfront, domain_name.
func attrNames(tr hcl.Traversal) []string {
	names := []string{tr.RootName()}
	for _, step := range tr[1:] {
		if a, ok := step.(hcl.TraverseAttr); ok {
			names = append(names, a.Name)
		}
	}
	return names
}

// show formats a traversal or a value for a message.
func show(x any) string {
	switch x := x.(type) {
	case hcl.Traversal:
		return strings.Join(attrNames(x), ".")
	case cty.Value:
		if !x.IsKnown() || x.IsNull() {
			return x.GoString()
		}
		switch x.Type() {
		case cty.String:
			return fmt.Sprintf("%q", x.AsString())
		case cty.Number:
			return x.AsBigFloat().String()
		case cty.Bool:
			return fmt.Sprint(x.True())
		}
		return x.GoString()
	}
	return fmt.Sprint(x)
}

// unscopedActions are the actions AWS authorizes on no resource: a statement of these only
// may name the resource "*".
var unscopedActions = []string{
	"ecr:GetAuthorizationToken",
	"ecs:DescribeTaskDefinition",
	"ecs:RegisterTaskDefinition",
}

// muejamResource matches an ARN under muejam: a name or path segment starting muejam/ or
// muejam-.
var muejamResource = regexp.MustCompile(`^arn:aws:[a-z0-9-]+:[^:]*:[^:]*:.*[:/]muejam[/-]`)

// policyDoc is an IAM policy document.
type policyDoc struct {
	Version   string
	Statement []struct {
		Sid         string
		Effect      string
		Action      stringList
		NotAction   stringList
		Resource    stringList
		NotResource stringList
		Principal   any
		Condition   map[string]map[string]any
	}
}

// stringList is a policy element that is a string or a list of strings.
type stringList []string

// UnmarshalJSON accepts a string or a list of strings.
func (s *stringList) UnmarshalJSON(data []byte) error {
	var one string
	if err := json.Unmarshal(data, &one); err == nil {
		*s = stringList{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(data, &many); err != nil {
		return err
	}
	*s = many
	return nil
}

// checkPolicy checks that the IAM policy in path is valid and least privilege.
func checkPolicy(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	checkPolicyDoc(t, path, data)
}

// checkPolicyDoc checks that the IAM policy data, from path, is valid and least privilege,
// and returns it.
func checkPolicyDoc(t *testing.T, path string, data []byte) policyDoc {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var p policyDoc
	if err := dec.Decode(&p); err != nil {
		t.Errorf("%s: not an IAM policy: %v", path, err)
		return p
	}
	if p.Version != "2012-10-17" || len(p.Statement) == 0 {
		t.Errorf("%s: want Version 2012-10-17 and at least one statement", path)
	}
	for i, s := range p.Statement {
		where := fmt.Sprintf("%s: statement %d %s", path, i, s.Sid)
		if s.Effect != "Allow" && s.Effect != "Deny" || s.Principal != nil || len(s.NotAction) > 0 || len(s.NotResource) > 0 {
			t.Errorf("%s: want an Allow (or Deny) statement with Action and Resource (no Principal, NotAction, NotResource)", where)
		}
		if len(s.Action) == 0 || len(s.Resource) == 0 {
			t.Errorf("%s: needs Action and Resource", where)
		}
		unscoped := true
		for _, a := range s.Action {
			if strings.Contains(a, "*") || !strings.Contains(a, ":") {
				t.Errorf("%s: action %q: name each action, no wildcard", where, a)
			}
			unscoped = unscoped && slices.Contains(unscopedActions, a)
		}
		for _, r := range s.Resource {
			if r == "*" && unscoped {
				continue
			}
			if !muejamResource.MatchString(r) {
				t.Errorf("%s: resource %q is not under muejam (muejam/... or muejam-...)", where, r)
			}
		}
	}
	return p
}
