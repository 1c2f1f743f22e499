package terraform

import (
	"fmt"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"go.yaml.in/yaml/v3"

	appsecrets "github.com/muejam/edge/appserver/secrets"
)

// alertRulesFile holds the seed's alerting rules (infra/monitoring), which the CloudWatch
// alarms of the Terraform implement in AWS.
const alertRulesFile = "../monitoring/rules/alerts.yml"

// TestTLSEveryHop checks TLS on every hop of staging and production: the load balancer gets an
// ACM certificate for its name, validated by DNS in the environment's hosted zone, an HTTPS
// listener with a TLS 1.2/1.3 policy on it, and plain HTTP redirecting there with a 301;
// CloudFront reaches it by that name over HTTPS only (TLS 1.2), redirects viewers to HTTPS and,
// with its own DNS-validated certificate for the aliases, refuses viewers below TLS 1.2. dev,
// which has no domain and no CloudFront, keeps plain HTTP, as alb_domain_name's description
// says.
func TestTLSEveryHop(t *testing.T) {
	alb := loadModule(t, filepath.Join(modulesDir, "alb"))
	cdn := loadModule(t, filepath.Join(modulesDir, "cloudfront"))
	actx := evalContext(t, alb, map[string]cty.Value{"domain_name": cty.StringVal("origin.example.com")})
	for _, w := range []struct {
		res  *hclsyntax.Block
		path []string
		want string
	}{
		{alb.resources["aws_lb_listener.https"], []string{"ssl_policy"}, `"ELBSecurityPolicy-TLS13-1-2-2021-06"`},
		{alb.resources["aws_lb_listener.https"], []string{"certificate_arn"}, "aws_acm_certificate_validation.this.certificate_arn"},
		{alb.resources["aws_acm_certificate.this"], []string{"domain_name"}, "var.domain_name"},
		{alb.resources["aws_acm_certificate.this"], []string{"validation_method"}, `"DNS"`},
		{alb.resources["aws_route53_record.validation"], []string{"zone_id"}, "var.hosted_zone_id"},
		{alb.resources["aws_acm_certificate_validation.this"], []string{"certificate_arn"}, "aws_acm_certificate.this.arn"},
		{cdn.resources["aws_acm_certificate.viewer"], []string{"validation_method"}, `"DNS"`},
		{cdn.resources["aws_route53_record.viewer_validation"], []string{"zone_id"}, "var.hosted_zone_id"},
	} {
		if w.res == nil {
			t.Errorf("a resource of %s or %s is missing", alb.dir, cdn.dir)
			continue
		}
		if got := exprAt(w.res.Body, w.path); got != w.want {
			t.Errorf("%s: %s = %s, want %s", w.res.Range(), strings.Join(w.path, "."), got, w.want)
		}
	}
	// With HTTPS, plain HTTP answers a 301 to it (origin_test.go: the default action's type).
	for _, d := range blocks(blocks(alb.resources["aws_lb_listener.http"].Body, "default_action")[0].Body, "dynamic") {
		if d.Labels[0] != "redirect" {
			continue
		}
		content := blocks(d.Body, "content")[0].Body
		for attr, want := range map[string]string{"status_code": `"HTTP_301"`, "protocol": `"HTTPS"`, "port": `"443"`} {
			if got := exprAt(content, []string{attr}); got != want {
				t.Errorf("%s: aws_lb_listener.http redirects with %s = %s, want %s", alb.dir, attr, got, want)
			}
		}
		if got := eval(t, d.Body.Attributes["for_each"].Expr, actx); got.LengthInt() != 1 {
			t.Errorf("%s: with a domain_name, aws_lb_listener.http does not redirect", alb.dir)
		}
	}
	if got := eval(t, alb.locals["https"], actx); !got.True() {
		t.Errorf("%s: with a domain_name, local.https is %s", alb.dir, show(got))
	}

	dist := cdn.resources["aws_cloudfront_distribution.this"]
	for _, on := range []bool{true, false} {
		cctx := evalContext(t, cdn, map[string]cty.Value{"origin_https": cty.BoolVal(on), "aliases": cty.ListVal([]cty.Value{cty.StringVal("www.example.com")})})
		for _, o := range blocks(dist.Body, "origin") {
			for _, c := range blocks(o.Body, "custom_origin_config") {
				policy := eval(t, c.Body.Attributes["origin_protocol_policy"].Expr, cctx).AsString()
				if on && policy != "https-only" {
					t.Errorf("%s: with origin_https, origin_protocol_policy = %q, want https-only", cdn.dir, policy)
				}
				if got := evalStrings(t, c.Body, "origin_ssl_protocols"); !slices.Equal(got, []string{"TLSv1.2"}) {
					t.Errorf("%s: origin_ssl_protocols = %v, want [TLSv1.2]", cdn.dir, got)
				}
			}
		}
		for _, typ := range []string{"default_cache_behavior", "ordered_cache_behavior"} {
			for _, b := range blocks(dist.Body, typ) {
				if got := eval(t, b.Body.Attributes["viewer_protocol_policy"].Expr, cctx).AsString(); got != "redirect-to-https" {
					t.Errorf("%s: %s viewer_protocol_policy = %q, want redirect-to-https", cdn.dir, typ, got)
				}
			}
		}
		cert := blocks(dist.Body, "viewer_certificate")[0].Body
		if got := eval(t, cert.Attributes["minimum_protocol_version"].Expr, cctx).AsString(); got != "TLSv1.2_2021" {
			t.Errorf("%s: with aliases, minimum_protocol_version = %q, want TLSv1.2_2021", cdn.dir, got)
		}
		if got := exprAt(cert, []string{"acm_certificate_arn"}); !strings.Contains(got, "expression") {
			t.Errorf("%s: acm_certificate_arn = %s, want the validated certificate", cdn.dir, got)
		}
		if !references(cert.Attributes["acm_certificate_arn"].Expr, "aws_acm_certificate_validation.viewer.certificate_arn") {
			t.Errorf("%s: acm_certificate_arn does not come from aws_acm_certificate_validation.viewer", cdn.dir)
		}
	}

	root := loadModule(t, rootDir)
	if d := root.variables["alb_domain_name"].Body.Attributes["description"]; d == nil || !strings.Contains(eval(t, d.Expr, nil).AsString(), "only dev") {
		t.Errorf("%s: variable alb_domain_name must say that only dev keeps plain HTTP", rootDir)
	}
	for _, env := range environments {
		dir := filepath.Join(environmentsDir, env)
		m := loadModule(t, dir)
		ctx := evalContext(t, m, tfvars(t, dir))
		vars := ctx.Variables["var"]
		for mod, want := range map[string]string{"alb.domain_name": "var.alb_domain_name", "alb.hosted_zone_id": "data.aws_route53_zone.this", "cloudfront.hosted_zone_id": "data.aws_route53_zone.this", "cloudfront.origin_domain_name": "module.alb.origin_domain_name", "cloudfront.origin_https": "module.alb.https", "cloudfront.aliases": "var.cdn_aliases"} {
			call, arg, _ := strings.Cut(mod, ".")
			if got := exprAt(m.modules[call].Body, []string{arg}); got != want && !references(m.modules[call].Body.Attributes[arg].Expr, want) {
				t.Errorf("%s: module %s: %s = %s, want %s", dir, call, arg, got, want)
			}
		}
		if env == "dev" {
			continue
		}
		if vars.GetAttr("alb_domain_name").AsString() == "" || vars.GetAttr("dns_zone_name").AsString() == "" {
			t.Errorf("%s: alb_domain_name and dns_zone_name must be set: the load balancer serves HTTPS and CloudFront reaches it over HTTPS only", dir)
		}
		if !strings.HasSuffix(vars.GetAttr("alb_domain_name").AsString(), vars.GetAttr("dns_zone_name").AsString()) {
			t.Errorf("%s: alb_domain_name is not in dns_zone_name", dir)
		}
		if !vars.GetAttr("enable_cdn").True() || vars.GetAttr("cdn_aliases").LengthInt() == 0 {
			t.Errorf("%s: enable_cdn and cdn_aliases must be set: viewers on TLS 1.2+ need the aliases' certificate", dir)
		}
	}
}

// database is what a test reads of an environment's database connections.
type database struct {
	ctx         *hcl.EvalContext
	app, master string // the login roles
	appEnv      map[string]string
	migrateEnv  map[string]string
	migrateSecs map[string]string
}

// readDatabase evaluates the app server's and the migration task's environments in the
// environment m in dir as deployed (deployedContext), with sentry_dsn set to dsn, RDS names
// standing for the rds module's outputs, and the secrets module's outputs it passes through.
func readDatabase(t *testing.T, m *tfModule, dir, dsn string) database {
	t.Helper()
	ctx := deployedContext(t, m, dir)
	vars := ctx.Variables["var"].AsValueMap()
	vars["sentry_dsn"] = cty.StringVal(dsn)
	ctx.Variables["var"] = cty.ObjectVal(vars)
	mods := ctx.Variables["module"].AsValueMap()
	secrets := mods["secrets"].AsValueMap()
	app := moduleArg(t, m, ctx, "secrets", "database_app_username")
	secrets["database_app_username"] = app
	secrets["sentry_dsn_secret_name"] = cty.StringVal("muejam/" + vars["environment"].AsString() + "/sentry-dsn")
	mods["secrets"] = cty.ObjectVal(secrets)
	n, _ := vars["db_replica_count"].AsBigFloat().Int64()
	replicas := []cty.Value{}
	for i := range n {
		replicas = append(replicas, cty.StringVal(fmt.Sprintf("replica-%d.rds.example", i+1)))
	}
	mods["rds"] = cty.ObjectVal(map[string]cty.Value{
		"address": cty.StringVal("primary.rds.example"), "port": cty.NumberIntVal(5432), "replica_addresses": cty.TupleVal(replicas),
	})
	ctx.Variables["module"] = cty.ObjectVal(mods)
	strs := func(v cty.Value) map[string]string {
		out := map[string]string{}
		for k, e := range v.AsValueMap() {
			out[k] = e.AsString()
		}
		return out
	}
	return database{
		ctx: ctx, app: app.AsString(), master: vars["db_username"].AsString(),
		appEnv:      strs(moduleArg(t, m, ctx, "appserver", "environment")),
		migrateEnv:  strs(moduleArg(t, m, ctx, "migrate", "environment")),
		migrateSecs: strs(moduleArg(t, m, ctx, "migrate", "secrets")),
	}
}

// TestDatabaseTLSAndRoles checks every database connection of each environment: the app
// server's primary and replica URLs and the migration task's verify the server's certificate
// and name (sslmode=verify-full) against the RDS CA bundle baked into the images (sslrootcert,
// docker/TestRDSCABundle); the app server connects as its own login role, never the master
// user, with the password of its own secret, and does not migrate; the migration task
// connects as the master user (the migration role) with the master password, injected by ECS,
// and gets the app role's password to set it; its execution role may read those two secrets
// only; and the secrets module keeps the two logins apart.
func TestDatabaseTLSAndRoles(t *testing.T) {
	root := loadModule(t, rootDir)
	bundle := eval(t, root.locals["db_ca_bundle"], nil).AsString()
	secrets := loadModule(t, filepath.Join(modulesDir, "secrets"))
	for res, want := range map[string]string{
		"aws_secretsmanager_secret_version.database":        `{"password":random_password.database_app.result,"username":var.database_app_username}`,
		"aws_secretsmanager_secret_version.database_master": `{"password":random_password.database.result,"username":var.database_username}`,
	} {
		items := objectItems(resourceAttr(t, secrets, res, "secret_string"))
		got := fmt.Sprintf(`{"password":%s,"username":%s}`, show(items["password"].(*hclsyntax.ScopeTraversalExpr).Traversal), show(items["username"].(*hclsyntax.ScopeTraversalExpr).Traversal))
		if got != want {
			t.Errorf("%s: %s holds %s, want %s", secrets.dir, res, got, want)
		}
	}
	if got := exprAt(secrets.outputs["database_password"].Body, []string{"value"}); got != "random_password.database.result" {
		t.Errorf("%s: output database_password (the RDS master password) = %s", secrets.dir, got)
	}
	task := loadModule(t, filepath.Join(modulesDir, "ecs-task"))
	for _, env := range environments {
		t.Run(env, func(t *testing.T) {
			dir := filepath.Join(environmentsDir, env)
			m := loadModule(t, dir)
			if got := exprAt(m.modules["rds"].Body, []string{"password"}); got != "module.secrets.database_password" {
				t.Errorf("%s: module rds: password = %s", dir, got)
			}
			db := readDatabase(t, m, dir, "")
			if db.app == db.master || db.app == "" {
				t.Errorf("%s: the app server's login %q must not be the master user %q", dir, db.app, db.master)
			}
			urls := map[string]string{"app DATABASE_URL": db.appEnv["DATABASE_URL"], "migrate DATABASE_URL": db.migrateEnv["DATABASE_URL"]}
			for i, u := range strings.Split(db.appEnv["DATABASE_REPLICA_URLS"], ",") {
				if u != "" {
					urls[fmt.Sprintf("app replica %d", i)] = u
				}
			}
			if n, _ := db.ctx.Variables["var"].GetAttr("db_replica_count").AsBigFloat().Int64(); int64(len(urls)-2) != n {
				t.Errorf("%s: %d replica URLs, want %d", dir, len(urls)-2, n)
			}
			for what, raw := range urls {
				u, err := url.Parse(raw)
				if err != nil {
					t.Errorf("%s: %s %q: %v", dir, what, raw, err)
					continue
				}
				if q := u.Query(); q.Get("sslmode") != "verify-full" || q.Get("sslrootcert") != bundle || len(q) != 2 {
					t.Errorf("%s: %s %q: want exactly sslmode=verify-full&sslrootcert=%s", dir, what, raw, bundle)
				}
				if _, set := u.User.Password(); set {
					t.Errorf("%s: %s carries a password", dir, what)
				}
				want := db.app
				if strings.HasPrefix(what, "migrate") {
					want = db.master
				}
				if u.User.Username() != want {
					t.Errorf("%s: %s connects as %q, want %q", dir, what, u.User.Username(), want)
				}
			}
			names := secretNames(t, secrets, env)
			arn := func(name string) string { return fakeSecretARN(db.ctx, name) }
			if ref, err := appsecrets.ParseRef(db.appEnv["DATABASE_PASSWORD"]); err != nil || ref.Scheme != appsecrets.SchemeAWSSM || ref.Name != names["database"] || ref.Key != "password" {
				t.Errorf("%s: the app server's DATABASE_PASSWORD = %q (%v), want aws-sm:%s#password", dir, db.appEnv["DATABASE_PASSWORD"], err, names["database"])
			}
			if db.appEnv["MIGRATE_ON_START"] != "false" {
				t.Errorf("%s: the app server's MIGRATE_ON_START = %q, want false: its role may not change the schema; the migration task migrates", dir, db.appEnv["MIGRATE_ON_START"])
			}
			wantSecs := map[string]string{
				"MIGRATE_DATABASE_PASSWORD": arn(names["database_master"]) + ":password::",
				"APP_DATABASE_PASSWORD":     arn(names["database"]) + ":password::",
			}
			if !maps.Equal(db.migrateSecs, wantSecs) {
				t.Errorf("%s: the migration task's secrets are %v, want %v", dir, db.migrateSecs, wantSecs)
			}
			if db.migrateEnv["DATABASE_PASSWORD"] != "env:MIGRATE_DATABASE_PASSWORD" || db.migrateEnv["APP_DATABASE_USER"] != db.app {
				t.Errorf("%s: the migration task's DATABASE_PASSWORD = %q, APP_DATABASE_USER = %q; want env:MIGRATE_DATABASE_PASSWORD and %q", dir, db.migrateEnv["DATABASE_PASSWORD"], db.migrateEnv["APP_DATABASE_USER"], db.app)
			}
			exec := taskExecutionSecretsPolicy(t, task, db.migrateSecs)
			for name, secretARN := range allSecretARNs(t, db.ctx, secrets, env) {
				want := name == "database" || name == "database_master"
				if got := policyAllows(exec, "secretsmanager:GetSecretValue", secretARN); got != want {
					t.Errorf("%s: the migration task's execution role may read %s: %v, want %v", dir, secretARN, got, want)
				}
			}
		})
	}
}

// secretNames returns the name of every secret the secrets module makes for env, by resource.
func secretNames(t *testing.T, secrets *tfModule, env string) map[string]string {
	t.Helper()
	ctx := evalContext(t, secrets, map[string]cty.Value{"environment_name": cty.StringVal(env)})
	names := map[string]string{}
	for key, res := range secrets.resources {
		if typ, name, _ := strings.Cut(key, "."); typ == "aws_secretsmanager_secret" {
			names[name] = eval(t, res.Body.Attributes["name"].Expr, ctx).AsString()
		}
	}
	return names
}

// fakeSecretARN returns the ARN Secrets Manager would give the secret name in the region of ctx's
// environment, as deployedContext makes them.
func fakeSecretARN(ctx *hcl.EvalContext, name string) string {
	return fmt.Sprintf("arn:aws:secretsmanager:%s:123456789012:secret:%s-AbCdEf", ctx.Variables["var"].GetAttr("region").AsString(), name)
}

// allSecretARNs returns the ARN of every secret the secrets module makes for env, by resource
// name, in the region of ctx.
func allSecretARNs(t *testing.T, ctx *hcl.EvalContext, secrets *tfModule, env string) map[string]string {
	t.Helper()
	arns := map[string]string{}
	for res, name := range secretNames(t, secrets, env) {
		arns[res] = fakeSecretARN(ctx, name)
	}
	return arns
}

// taskExecutionSecretsPolicy evaluates the read-injected-secrets policy that the ecs-task module
// (mod: it or serviceTask, the ecs-service module's) gives an execution role for secrets.
func taskExecutionSecretsPolicy(t *testing.T, mod *tfModule, secrets map[string]string) policyDoc {
	t.Helper()
	vals := map[string]cty.Value{}
	for k, v := range secrets {
		vals[k] = cty.StringVal(v)
	}
	ctx := evalContext(t, mod, map[string]cty.Value{"secrets": cty.MapVal(vals)})
	return checkPolicyDoc(t, mod.dir+": read-injected-secrets", []byte(eval(t, resourceAttr(t, mod, "aws_iam_role_policy.execution_secrets", "policy"), ctx).AsString()))
}

// TestPolicyAllows checks the IAM evaluation the policy tests rely on: Allow and Deny (a Deny
// wins), action patterns case-insensitive with * and ?, resource patterns with * and ?.
func TestPolicyAllows(t *testing.T) {
	p := policyDoc{Version: "2012-10-17"}
	add := func(effect string, actions, resources []string) {
		p.Statement = append(p.Statement, struct {
			Sid         string
			Effect      string
			Action      stringList
			NotAction   stringList
			Resource    stringList
			NotResource stringList
			Principal   any
			Condition   map[string]map[string]any
		}{Effect: effect, Action: actions, Resource: resources})
	}
	add("Allow", []string{"secretsmanager:Get*"}, []string{"arn:aws:secretsmanager:*:*:secret:muejam/staging/*"})
	add("Deny", []string{"secretsmanager:GetSecretValu?"}, []string{"arn:aws:secretsmanager:*:*:secret:muejam/staging/database-master-??????"})
	const base = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:"
	for _, c := range []struct {
		action, arn string
		want        bool
	}{
		{"secretsmanager:GetSecretValue", base + "muejam/staging/database-AbCdEf", true},
		{"SecretsManager:getsecretvalue", base + "muejam/staging/database-AbCdEf", true},
		{"secretsmanager:DescribeSecret", base + "muejam/staging/database-AbCdEf", false},
		{"secretsmanager:GetSecretValue", base + "muejam/production/database-AbCdEf", false},
		{"secretsmanager:GetSecretValue", base + "muejam/staging/database-master-AbCdEf", false},
		{"secretsmanager:GetResourcePolicy", base + "muejam/staging/database-master-AbCdEf", true},
		{"secretsmanager:GetSecretValue", base + "muejam/staging/database-master-AbCdEfG", true},
	} {
		if got := policyAllows(p, c.action, c.arn); got != c.want {
			t.Errorf("%s on %s: %v, want %v", c.action, c.arn, got, c.want)
		}
	}
}

// secretActions are the Secrets Manager actions a role could read a secret's value or
// metadata with.
var secretActions = []string{"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret", "secretsmanager:BatchGetSecretValue"}

// TestSecretsScopedPerEnvironment evaluates, as IAM does, every policy of every role of the ECS
// tasks of each environment (the app server's task role, the execution roles of the edge, the
// app server and the migration task) against every secret of every environment: no role reads a
// secret of another environment (staging's cannot read production's, nor the reverse), and the
// app server's task role reads its environment's secrets but the master credentials and the
// CDN origin secret, including the Sentry DSN.
func TestSecretsScopedPerEnvironment(t *testing.T) {
	secrets := loadModule(t, filepath.Join(modulesDir, "secrets"))
	svc := serviceTask(t)
	task := loadModule(t, filepath.Join(modulesDir, "ecs-task"))
	for _, env := range environments {
		t.Run(env, func(t *testing.T) {
			dir := filepath.Join(environmentsDir, env)
			m := loadModule(t, dir)
			db := readDatabase(t, m, dir, "https://key@o1.ingest.sentry.io/1")
			roles := map[string][]policyDoc{}
			for it := moduleArg(t, m, db.ctx, "appserver", "task_policies").ElementIterator(); it.Next(); {
				k, v := it.Element()
				roles["appserver task"] = append(roles["appserver task"], checkPolicyDoc(t, dir+": app server task policy "+k.AsString(), []byte(v.AsString())))
			}
			for _, call := range []string{"appserver", "edge", "migrate"} {
				exec := checkPolicyDoc(t, dir+": "+call+" execution policy", []byte(moduleArg(t, m, db.ctx, call, "execution_policy").AsString()))
				roles[call+" execution"] = append(roles[call+" execution"], exec)
			}
			edgeSecrets := map[string]string{}
			for k, v := range moduleArg(t, m, db.ctx, "edge", "secrets").AsValueMap() {
				edgeSecrets[k] = v.AsString()
			}
			roles["edge execution"] = append(roles["edge execution"], taskExecutionSecretsPolicy(t, svc, edgeSecrets))
			roles["migrate execution"] = append(roles["migrate execution"], taskExecutionSecretsPolicy(t, task, db.migrateSecs))
			if _, ok := m.modules["edge"].Body.Attributes["task_policies"]; ok {
				t.Errorf("%s: the edge's task role has policies: it calls no AWS API", dir)
			}

			for _, other := range environments {
				for name, secretARN := range allSecretARNs(t, db.ctx, secrets, other) {
					for role, docs := range roles {
						for _, action := range secretActions {
							got := slices.ContainsFunc(docs, func(p policyDoc) bool { return policyAllows(p, action, secretARN) })
							want := false
							switch {
							case other != env:
							case role == "appserver task":
								want = action != "secretsmanager:BatchGetSecretValue" && name != "database_master" && name != "cdn_origin_secret"
							case role == "migrate execution":
								want = action == "secretsmanager:GetSecretValue" && (name == "database" || name == "database_master")
							case role == "edge execution":
								want = action == "secretsmanager:GetSecretValue" && slices.Contains([]string{"pii_pseudonym_key", "valkey_auth_token", "cdn_origin_secret", "read_your_writes_key"}, name)
							}
							if got != want {
								t.Errorf("%s: the %s role: %s on %s's %s (%s): %v, want %v", dir, role, action, other, name, secretARN, got, want)
							}
						}
					}
				}
			}
		})
	}
}

// TestSentryDSN checks SENTRY_DSN (issue #22) in each environment: with a DSN, the secrets
// module stores it as muejam/ENV/sentry-dsn, the app server gets SENTRY_DSN=aws-sm: that secret,
// a reference appserver/secrets parses, and its task role may read it (TestSecretsScopedPer-
// Environment: and no other environment's); without one, no secret and no SENTRY_DSN.
func TestSentryDSN(t *testing.T) {
	secrets := loadModule(t, filepath.Join(modulesDir, "secrets"))
	for _, dsn := range []string{"", "https://key@o1.ingest.sentry.io/1"} {
		sctx := evalContext(t, secrets, map[string]cty.Value{"environment_name": cty.StringVal("staging"), "sentry_dsn": cty.StringVal(dsn)})
		want := cty.NumberIntVal(map[bool]int64{true: 1, false: 0}[dsn != ""])
		for _, res := range []string{"aws_secretsmanager_secret.sentry_dsn", "aws_secretsmanager_secret_version.sentry_dsn"} {
			if got := eval(t, resourceAttr(t, secrets, res, "count"), sctx); !got.RawEquals(want) {
				t.Errorf("%s: with sentry_dsn %q, %s count = %s, want %s", secrets.dir, dsn, res, show(got), show(want))
			}
		}
	}
	if got := exprAt(secrets.resources["aws_secretsmanager_secret_version.sentry_dsn"].Body, []string{"secret_string"}); got != "var.sentry_dsn" {
		t.Errorf("%s: the Sentry DSN secret holds %s, want var.sentry_dsn", secrets.dir, got)
	}
	if s := secrets.variables["sentry_dsn"].Body.Attributes["sensitive"]; s == nil || !eval(t, s.Expr, nil).True() {
		t.Errorf("%s: variable sentry_dsn must be sensitive", secrets.dir)
	}
	for _, env := range environments {
		dir := filepath.Join(environmentsDir, env)
		m := loadModule(t, dir)
		if got := exprAt(m.modules["secrets"].Body, []string{"sentry_dsn"}); got != "var.sentry_dsn" {
			t.Errorf("%s: module secrets: sentry_dsn = %s, want var.sentry_dsn", dir, got)
		}
		if _, set := tfvars(t, dir)["sentry_dsn"]; set {
			t.Errorf("%s/%s sets sentry_dsn: pass it as TF_VAR_sentry_dsn", dir, tfvarsFile)
		}
		for _, dsn := range []string{"", "https://key@o1.ingest.sentry.io/1"} {
			db := readDatabase(t, m, dir, dsn)
			got, set := db.appEnv["SENTRY_DSN"]
			if dsn == "" {
				if set {
					t.Errorf("%s: without a DSN, the app server gets SENTRY_DSN = %q", dir, got)
				}
				continue
			}
			name := secretNames(t, secrets, env)["sentry_dsn"]
			if ref, err := appsecrets.ParseRef(got); err != nil || ref.Scheme != appsecrets.SchemeAWSSM || ref.Name != name || ref.Key != "" {
				t.Errorf("%s: the app server's SENTRY_DSN = %q (%v), want aws-sm:%s", dir, got, err, name)
			}
			if !references(m.modules["appserver"].Body.Attributes["environment"].Expr, "module.secrets.sentry_dsn_secret_name") {
				t.Errorf("%s: SENTRY_DSN does not name module.secrets.sentry_dsn_secret_name", dir)
			}
		}
	}
}

// alarmRule is a seed alert of alertRulesFile, as CloudWatch must implement it.
type alarmRule struct {
	alert, severity string
	op              string  // the comparison of the rule's expression: > or ==
	threshold       float64 // its right-hand side
	forDur          time.Duration
}

// ruleThreshold finds the comparison of an alert rule's expression (its first line).
var ruleThreshold = regexp.MustCompile(`(>|==)\s*([0-9.]+)`)

// percentMetrics are the CloudWatch metrics in percent where the rules have ratios.
var percentMetrics = []string{"CPUUtilization", "MemoryUtilization"}

// projectAlarms are the CloudWatch alarms that are not the seed's, by resource.
var projectAlarms = []string{"rds/aws_cloudwatch_metric_alarm.wal_backlog"}

// TestAlarmsMatchAlertRules checks that the CloudWatch alarms of the modules are the seed's nine
// alerts of infra/monitoring/rules/alerts.yml, each (alert, severity) at least once and nothing
// else but projectAlarms: the same threshold (percent metrics scaled), the same comparison
// ("== 0" of an up-ness metric as fewer than 1), and the same duration (for: as one-minute
// periods that must all breach); critical alarms notify the critical actions, warnings the
// warning ones; and that each environment wires those to the critical topic, which pages
// through an HTTPS endpoint, and the warning topic, which emails and chats.
func TestAlarmsMatchAlertRules(t *testing.T) {
	var rf struct {
		Groups []struct {
			Rules []struct {
				Alert, Expr, For string
				Labels           map[string]string
			}
		}
	}
	data, err := os.ReadFile(alertRulesFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &rf); err != nil {
		t.Fatalf("%s: %v", alertRulesFile, err)
	}
	rules := map[string]alarmRule{}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			m := ruleThreshold.FindStringSubmatch(strings.SplitN(r.Expr, "\n", 2)[0])
			d, err := time.ParseDuration(r.For)
			if m == nil || err != nil {
				t.Fatalf("%s: %s: no comparison in %q or no for: (%v)", alertRulesFile, r.Alert, r.Expr, err)
			}
			v, _ := strconv.ParseFloat(m[2], 64)
			key := r.Alert + "/" + r.Labels["severity"]
			rules[key] = alarmRule{r.Alert, r.Labels["severity"], m[1], v, d}
		}
	}
	if len(rules) != 9 {
		t.Fatalf("%s has %d alerts, the seed's are 9", alertRulesFile, len(rules))
	}

	actions := map[string]cty.Value{"critical": cty.ListVal([]cty.Value{cty.StringVal("arn:critical")}), "warning": cty.ListVal([]cty.Value{cty.StringVal("arn:warning")})}
	covered := map[string]bool{}
	for _, dir := range []string{"alb", "rds", "ecs-service"} {
		mod := loadModule(t, filepath.Join(modulesDir, dir))
		vars := map[string]cty.Value{
			"critical_actions": actions["critical"], "warning_actions": actions["warning"],
			"name": cty.StringVal("muejam-test"), "environment_name": cty.StringVal("test"), "replica_count": cty.NumberIntVal(1),
		}
		for key, res := range mod.resources {
			if !strings.HasPrefix(key, "aws_cloudwatch_metric_alarm.") {
				continue
			}
			ctx := evalContext(t, mod, vars)
			var instances []map[string]cty.Value
			switch {
			case res.Body.Attributes["for_each"] != nil:
				for k, v := range eval(t, res.Body.Attributes["for_each"].Expr, ctx).AsValueMap() {
					instances = append(instances, map[string]cty.Value{"each": cty.ObjectVal(map[string]cty.Value{"key": cty.StringVal(k), "value": v})})
				}
			case res.Body.Attributes["count"] != nil:
				if n := eval(t, res.Body.Attributes["count"].Expr, ctx); n.Equals(cty.Zero).True() {
					t.Errorf("%s: %s has no instance with alarm actions", mod.dir, key)
				}
				instances = append(instances, map[string]cty.Value{"count": cty.ObjectVal(map[string]cty.Value{"index": cty.Zero})})
			default:
				instances = append(instances, nil)
			}
			if slices.Contains(projectAlarms, dir+"/"+key) {
				continue
			}
			for _, inst := range instances {
				ictx := ctx.NewChild()
				ictx.Variables = inst
				attr := func(name string) cty.Value {
					a := res.Body.Attributes[name]
					if a == nil {
						return cty.NullVal(cty.DynamicPseudoType)
					}
					return eval(t, a.Expr, ictx)
				}
				tags := attr("tags")
				if tags.IsNull() || !tags.Type().IsObjectType() && !tags.Type().IsMapType() {
					t.Errorf("%s: %s has no tags Alert and Severity", mod.dir, key)
					continue
				}
				tm := tags.AsValueMap()
				if tm["Alert"].IsNull() || tm["Severity"].IsNull() {
					t.Errorf("%s: %s has no tags Alert and Severity", mod.dir, key)
					continue
				}
				id := tm["Alert"].AsString() + "/" + tm["Severity"].AsString()
				where := fmt.Sprintf("%s: %s (%s)", mod.dir, key, id)
				rule, ok := rules[id]
				if !ok {
					t.Errorf("%s: no such alert in %s", where, alertRulesFile)
					continue
				}
				covered[id] = true
				for _, a := range []string{"alarm_actions", "ok_actions"} {
					if got := attr(a); !got.Equals(actions[rule.severity]).True() {
						t.Errorf("%s: %s = %s, want the %s actions", where, a, show(got), rule.severity)
					}
				}
				threshold, _ := attr("threshold").AsBigFloat().Float64()
				if metric := attr("metric_name"); !metric.IsNull() && slices.Contains(percentMetrics, metric.AsString()) {
					threshold /= 100
				}
				op := attr("comparison_operator").AsString()
				switch {
				case rule.op == ">" && (op != "GreaterThanThreshold" || threshold != rule.threshold):
					t.Errorf("%s: %s %v, want GreaterThanThreshold %v (%s)", where, op, threshold, rule.threshold, alertRulesFile)
				case rule.op == "==" && (rule.threshold != 0 || op != "LessThanThreshold" || threshold != 1 || attr("treat_missing_data").AsString() != "breaching"):
					t.Errorf("%s: %s %v, want LessThanThreshold 1 with missing data breaching (the rule's == 0)", where, op, threshold)
				}
				period := attr("period")
				if period.IsNull() {
					for _, q := range blocks(res.Body, "metric_query") {
						for _, metric := range blocks(q.Body, "metric") {
							period = eval(t, metric.Body.Attributes["period"].Expr, ictx)
						}
					}
				}
				p, _ := period.AsBigFloat().Int64()
				n, _ := attr("evaluation_periods").AsBigFloat().Int64()
				if got := time.Duration(p*n) * time.Second; p != 60 || got != rule.forDur {
					t.Errorf("%s: %d periods of %ds, want one-minute periods over the rule's for: %s", where, n, p, rule.forDur)
				}
				if d := attr("datapoints_to_alarm"); !d.IsNull() && !d.Equals(attr("evaluation_periods")).True() {
					t.Errorf("%s: datapoints_to_alarm %s of %d: the rule fires only when every evaluation breaches", where, show(d), n)
				}
			}
		}
	}
	for id := range rules {
		if !covered[id] {
			t.Errorf("no CloudWatch alarm implements %s of %s", id, alertRulesFile)
		}
	}

	for _, env := range environments {
		dir := filepath.Join(environmentsDir, env)
		m := loadModule(t, dir)
		for _, call := range []string{"alb", "rds", "appserver", "edge"} {
			for _, sev := range []string{"critical", "warning"} {
				if got := exprAt(m.modules[call].Body, []string{sev + "_actions"}); got != "local."+sev+"_actions" {
					t.Errorf("%s: module %s: %s_actions = %s, want local.%[3]s_actions", dir, call, sev, got)
				}
				if !references(m.locals[sev+"_actions"], "aws_sns_topic."+sev+".arn") {
					t.Errorf("%s: local.%s_actions is not the %[2]s SNS topic", dir, sev)
				}
			}
		}
		for res, want := range map[string][2]string{
			"aws_sns_topic_subscription.pager":         {"aws_sns_topic.critical", `"https"`},
			"aws_sns_topic_subscription.warning_email": {"aws_sns_topic.warning", `"email"`},
			"aws_sns_topic_subscription.warning_chat":  {"aws_sns_topic.warning", `"https"`},
		} {
			b := m.resources[res]
			if b == nil {
				t.Errorf("%s: no %s", dir, res)
				continue
			}
			if !references(b.Body.Attributes["topic_arn"].Expr, want[0]+".arn") || exprAt(b.Body, []string{"protocol"}) != want[1] {
				t.Errorf("%s: %s: want protocol %s on %s", dir, res, want[1], want[0])
			}
		}
		if env != "dev" {
			vars := evalContext(t, m, tfvars(t, dir)).Variables["var"]
			if !vars.GetAttr("alerting").True() || !vars.GetAttr("container_insights").True() {
				t.Errorf("%s: alerting and container_insights (RunningTaskCount, ServiceUnavailable) must be on", dir)
			}
		}
	}
	root := loadModule(t, rootDir)
	for endpoint, ok := range map[string]bool{"": true, "https://events.pagerduty.com/integration/k/enqueue": true, "http://events.pagerduty.com/x": false} {
		ctx := evalContext(t, root, map[string]cty.Value{"pager_endpoint": cty.StringVal(endpoint)})
		valid := true
		for _, b := range blocks(root.variables["pager_endpoint"].Body, "validation") {
			valid = valid && eval(t, b.Body.Attributes["condition"].Expr, ctx).True()
		}
		if valid != ok {
			t.Errorf("%s: pager_endpoint %q accepted: %v, want %v", rootDir, endpoint, valid, ok)
		}
	}
}
