package terraform

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"

	"github.com/muejam/edge/internal/testenv/caddyfileread"
	"github.com/muejam/edge/modules/clientaddr"
)

// originSecretCases are values of a CDN origin secret and whether the modules that take one
// (alb, cloudfront) must accept it: letters and digits, 16 (the edge's minimum) to 128 (an
// ALB header condition's maximum); * and ? would be wildcards in the listener rule.
var originSecretCases = map[string]bool{
	strings.Repeat("aZ09", 4):          true,
	strings.Repeat("aZ09", 12):         true,
	strings.Repeat("aZ09", 32):         true,
	strings.Repeat("a", 15):            false,
	strings.Repeat("a", 129):           false,
	strings.Repeat("a", 16) + "*":      false,
	strings.Repeat("a", 16) + "?":      false,
	strings.Repeat("a", 16) + "-":      false,
	strings.Repeat("a", 16) + " ":      false,
	strings.Repeat("a", 16) + "\n":     false,
	strings.Repeat("a", 16) + "\u00e9": false,
}

// TestCDNOriginSecret checks the proof that a request came through CloudFront, from the secret
// to the edge:
//   - (a) the secrets module makes muejam/ENV/cdn-origin-secret in every environment, 48
//     letters and digits, and hands out its value (sensitive) and the ARN of its version;
//   - (b) CloudFront sends it on every request to the edge origin as the custom header the
//     edge reads (X-Origin-Verify, client_address's default), and the API's behaviour forwards
//     CloudFront-Viewer-Address through its origin request policy and Authorization through
//     its cache key (an origin request policy may not name it), never the viewer's Host;
//   - (c) the load balancer's serving listener answers 403 by default and forwards to the edge
//     only through a rule whose http_header condition is that header holding the secret; its
//     health checks go to the tasks directly, on the path the edge exempts from its subnets;
//   - the edge gets the secret as CDN_ORIGIN_SECRET from Secrets Manager: its execution role
//     may read it, the app server's task role may not (evaluated as IAM does), and neither
//     container gets it, or any other secret's value, as plain environment.
func TestCDNOriginSecret(t *testing.T) {
	header := clientaddr.DefaultSecretHeader
	cf := readCaddyfile(t, edgeCaddyfile, nil)
	client := cf.Directive(t, "client_address")
	if h := blockOption(client, "secret_header"); h != nil {
		header = h[0]
	}
	if h := blockOption(client, "viewer_header"); h != nil && !strings.EqualFold(h[0], clientaddr.DefaultViewerHeader) {
		t.Errorf("%s: client_address reads the viewer address from %s; CloudFront sends %s", edgeCaddyfile, h[0], clientaddr.DefaultViewerHeader)
	}
	if secret := blockOption(client, "secret"); len(secret) != 1 || secret[0] != "{env.CDN_ORIGIN_SECRET}" {
		t.Errorf("%s: client_address secret %v, want {env.CDN_ORIGIN_SECRET}", edgeCaddyfile, secret)
	}
	if blockOption(client, "require") == nil {
		t.Errorf("%s: client_address does not require the secret: requests that skip CloudFront would be served", edgeCaddyfile)
	}

	// (a) The secret.
	secrets := loadModule(t, filepath.Join(modulesDir, "secrets"))
	const password = "random_password.cdn_origin_secret"
	for attr, want := range map[string]cty.Value{"length": cty.NumberIntVal(48), "special": cty.False} {
		if got := eval(t, resourceAttr(t, secrets, password, attr), nil); !got.RawEquals(want) {
			t.Errorf("%s: %s.%s = %s, want %s", secrets.dir, password, attr, show(got), show(want))
		}
	}
	for _, attr := range []string{"upper", "lower", "numeric"} {
		if a, ok := secrets.resources[password].Body.Attributes[attr]; ok && !eval(t, a.Expr, nil).True() {
			t.Errorf("%s: %s.%s is false: the secret is letters and digits", secrets.dir, password, attr)
		}
	}
	if _, ok := secrets.resources[password].Body.Attributes["override_special"]; ok {
		t.Errorf("%s: %s sets override_special: the secret is letters and digits", secrets.dir, password)
	}
	for _, w := range []struct {
		block     *hclsyntax.Block
		where     string
		attr      string
		want      string
		sensitive bool
	}{
		{secrets.resources["aws_secretsmanager_secret_version.cdn_origin_secret"], "aws_secretsmanager_secret_version.cdn_origin_secret", "secret_string", password + ".result", false},
		{secrets.resources["aws_secretsmanager_secret_version.cdn_origin_secret"], "aws_secretsmanager_secret_version.cdn_origin_secret", "secret_id", "aws_secretsmanager_secret.cdn_origin_secret.id", false},
		{secrets.outputs["cdn_origin_secret"], "output cdn_origin_secret", "value", password + ".result", true},
		{secrets.outputs["cdn_origin_secret_arn"], "output cdn_origin_secret_arn", "value", "aws_secretsmanager_secret_version.cdn_origin_secret.arn", false},
	} {
		if w.block == nil {
			t.Errorf("%s: no %s", secrets.dir, w.where)
			continue
		}
		if got := exprAt(w.block.Body, []string{w.attr}); got != w.want {
			t.Errorf("%s: %s: %s = %s, want %s", secrets.dir, w.where, w.attr, got, w.want)
		}
		if sens := w.block.Body.Attributes["sensitive"]; w.sensitive && (sens == nil || !eval(t, sens.Expr, nil).True()) {
			t.Errorf("%s: %s must be sensitive", secrets.dir, w.where)
		}
	}
	if !references(secrets.outputs["secret_arns"].Body.Attributes["value"].Expr, "aws_secretsmanager_secret.cdn_origin_secret.arn") {
		t.Errorf("%s: output secret_arns does not list the CDN origin secret", secrets.dir)
	}

	// (b) CloudFront.
	cdn := loadModule(t, filepath.Join(modulesDir, "cloudfront"))
	checkSecretVariable(t, cdn)
	dist := cdn.resources["aws_cloudfront_distribution.this"]
	var edgeOrigin bool
	for _, origin := range blocks(dist.Body, "origin") {
		id := eval(t, origin.Body.Attributes["origin_id"].Expr, nil).AsString()
		var headers []string
		for _, h := range blocks(origin.Body, "custom_header") {
			name := eval(t, h.Body.Attributes["name"].Expr, nil).AsString()
			headers = append(headers, name)
			if strings.EqualFold(name, header) && exprAt(h.Body, []string{"value"}) != "var.origin_secret" {
				t.Errorf("%s: origin %s: custom header %s = %s, want var.origin_secret", cdn.dir, id, name, exprAt(h.Body, []string{"value"}))
			}
		}
		hasSecret := slices.ContainsFunc(headers, func(h string) bool { return strings.EqualFold(h, header) })
		if id == "edge" {
			edgeOrigin = true
			if !hasSecret {
				t.Errorf("%s: origin edge has custom headers %v, want %s (the header the edge's client_address checks)", cdn.dir, headers, header)
			}
		} else if hasSecret {
			t.Errorf("%s: origin %s gets the CDN origin secret; only the edge's origin may", cdn.dir, id)
		}
	}
	if !edgeOrigin {
		t.Fatalf("%s: the distribution has no origin edge", cdn.dir)
	}
	behaviours := append(blocks(dist.Body, "default_cache_behavior"), blocks(dist.Body, "ordered_cache_behavior")...)
	var apiBehaviours int
	for _, b := range behaviours {
		if eval(t, b.Body.Attributes["target_origin_id"].Expr, nil).AsString() != "edge" {
			continue
		}
		apiBehaviours++
		for attr, want := range map[string]string{
			"origin_request_policy_id": "aws_cloudfront_origin_request_policy.api.id",
			"cache_policy_id":          "aws_cloudfront_cache_policy.api.id",
		} {
			if got := exprAt(b.Body, []string{attr}); got != want {
				t.Errorf("%s: a cache behaviour of origin edge has %s = %s, want %s", cdn.dir, attr, got, want)
			}
		}
	}
	if apiBehaviours == 0 {
		t.Errorf("%s: no cache behaviour targets origin edge", cdn.dir)
	}
	orp := cdn.resources["aws_cloudfront_origin_request_policy.api"]
	if orp == nil {
		t.Fatalf("%s: no aws_cloudfront_origin_request_policy.api", cdn.dir)
	}
	if got := exprAt(orp.Body, []string{"headers_config", "header_behavior"}); got != `"whitelist"` {
		t.Errorf("%s: the API's origin request policy has header_behavior %s, want \"whitelist\" (CloudFront headers need a whitelist, and every allViewer behaviour forwards the viewer's Host, which the load balancer's certificate does not cover)", cdn.dir, got)
	}
	forwarded := evalStrings(t, orp.Body, "headers_config", "headers", "items")
	if !slices.ContainsFunc(forwarded, func(h string) bool { return strings.EqualFold(h, clientaddr.DefaultViewerHeader) }) {
		t.Errorf("%s: the API's origin request policy forwards %v, not %s: the edge would see CloudFront's address for every viewer", cdn.dir, forwarded, clientaddr.DefaultViewerHeader)
	}
	for _, h := range forwarded {
		for _, bad := range []string{"Host", "Authorization", header} {
			if strings.EqualFold(h, bad) {
				t.Errorf("%s: the API's origin request policy names %s (Host breaks the origin's TLS name, CloudFront refuses Authorization there, and the origin header is CloudFront's to set)", cdn.dir, h)
			}
		}
	}
	if len(forwarded) > 10 {
		t.Errorf("%s: the API's origin request policy names %d headers; CloudFront's quota is 10", cdn.dir, len(forwarded))
	}
	for _, path := range [][]string{{"cookies_config", "cookie_behavior"}, {"query_strings_config", "query_string_behavior"}} {
		if got := exprAt(orp.Body, path); got != `"all"` {
			t.Errorf("%s: the API's origin request policy: %s = %s, want \"all\"", cdn.dir, strings.Join(path, "."), got)
		}
	}
	cache := cdn.resources["aws_cloudfront_cache_policy.api"]
	if cache == nil {
		t.Fatalf("%s: no aws_cloudfront_cache_policy.api", cdn.dir)
	}
	key := []string{"parameters_in_cache_key_and_forwarded_to_origin", "headers_config"}
	if got := exprAt(cache.Body, append(key, "header_behavior")); got != `"whitelist"` {
		t.Errorf("%s: the API's cache policy has header_behavior %s, want \"whitelist\"", cdn.dir, got)
	}
	if keyed := evalStrings(t, cache.Body, append(key, "headers", "items")...); !slices.ContainsFunc(keyed, func(h string) bool { return strings.EqualFold(h, "Authorization") }) {
		t.Errorf("%s: the API's cache key has headers %v, not Authorization: CloudFront would drop the token from GETs, and serve one viewer's answer to another", cdn.dir, keyed)
	}
	for _, attr := range []string{"min_ttl", "default_ttl"} {
		if got := eval(t, cache.Body.Attributes[attr].Expr, nil); !got.RawEquals(cty.Zero) {
			t.Errorf("%s: the API's cache policy has %s = %s, want 0: cached only as the edge's Cache-Control says", cdn.dir, attr, show(got))
		}
	}

	// (c) The load balancer.
	alb := loadModule(t, filepath.Join(modulesDir, "alb"))
	checkSecretVariable(t, alb)
	const secretVal = "Sekr3tSekr3tSekr3tSekr3t"
	listeners := map[string]string{"https": "arn:https-listener", "http": "arn:http-listener"}
	for _, domain := range []string{"", "origin.staging.muejam.com"} {
		https := domain != ""
		ctx := evalContext(t, alb, map[string]cty.Value{"domain_name": cty.StringVal(domain), "origin_secret": cty.StringVal(secretVal)})
		ctx.Functions = tfFunctions
		refreshLocals(alb, ctx)
		ctx.Variables["aws_lb_listener"] = cty.ObjectVal(map[string]cty.Value{
			"https": cty.TupleVal([]cty.Value{cty.ObjectVal(map[string]cty.Value{"arn": cty.StringVal(listeners["https"])})}),
			"http":  cty.ObjectVal(map[string]cty.Value{"arn": cty.StringVal(listeners["http"])}),
		})
		ctx.Variables["aws_lb_target_group"] = cty.ObjectVal(map[string]cty.Value{"edge": cty.ObjectVal(map[string]cty.Value{"arn": cty.StringVal("arn:edge-target-group")})})
		serving := "http"
		if https {
			serving = "https"
		}
		// No listener forwards by default; the serving one refuses with 403, plain HTTP
		// redirects when there is HTTPS.
		for name, want := range map[string]string{"https": "fixed-response", "http": map[bool]string{true: "redirect", false: "fixed-response"}[https]} {
			res := alb.resources["aws_lb_listener."+name]
			if res == nil {
				t.Fatalf("%s: no aws_lb_listener.%s", alb.dir, name)
			}
			if name == "https" && !https {
				continue // count = 0
			}
			action := blocks(res.Body, "default_action")
			if len(action) != 1 {
				t.Fatalf("%s: aws_lb_listener.%s has %d default actions", alb.dir, name, len(action))
			}
			if got := eval(t, action[0].Body.Attributes["type"].Expr, ctx).AsString(); got != want {
				t.Errorf("%s: with domain_name %q, aws_lb_listener.%s's default action is %s, want %s", alb.dir, domain, name, got, want)
			}
			if want == "fixed-response" {
				if status := fixedResponseStatus(t, action[0], ctx); status != "403" {
					t.Errorf("%s: with domain_name %q, aws_lb_listener.%s's default answer is %q, want 403", alb.dir, domain, name, status)
				}
			}
			if tg, ok := action[0].Body.Attributes["target_group_arn"]; ok && !eval(t, tg.Expr, ctx).IsNull() {
				t.Errorf("%s: aws_lb_listener.%s forwards by default", alb.dir, name)
			}
		}
		// Every listener rule forwards to the edge only with the secret header; one is on the
		// serving listener.
		var onServing int
		for name, rule := range alb.resources {
			if !strings.HasPrefix(name, "aws_lb_listener_rule.") {
				continue
			}
			arn := eval(t, rule.Body.Attributes["listener_arn"].Expr, ctx).AsString()
			if arn == listeners[serving] {
				onServing++
			}
			for _, a := range blocks(rule.Body, "action") {
				if got := eval(t, a.Body.Attributes["type"].Expr, ctx).AsString(); got != "forward" || exprAt(a.Body, []string{"target_group_arn"}) != "aws_lb_target_group.edge.arn" {
					t.Errorf("%s: %s: action %s to %s, want forward to aws_lb_target_group.edge", alb.dir, name, got, exprAt(a.Body, []string{"target_group_arn"}))
				}
			}
			var gated bool
			for _, c := range blocks(rule.Body, "condition") {
				for _, h := range blocks(c.Body, "http_header") {
					field := eval(t, h.Body.Attributes["http_header_name"].Expr, ctx).AsString()
					values := eval(t, h.Body.Attributes["values"].Expr, ctx)
					gated = gated || strings.EqualFold(field, header) && values.LengthInt() == 1 && values.Index(cty.NumberIntVal(0)).RawEquals(cty.StringVal(secretVal))
				}
			}
			if !gated {
				t.Errorf("%s: %s forwards without the condition %s = var.origin_secret", alb.dir, name, header)
			}
		}
		if onServing != 1 {
			t.Errorf("%s: with domain_name %q, %d listener rules on the serving listener (%s), want 1", alb.dir, domain, onServing, serving)
		}
	}
	tg := alb.resources["aws_lb_target_group.edge"]
	if got := exprAt(tg.Body, []string{"health_check", "path"}); got != "var.health_check_path" {
		t.Errorf("%s: the target group's health check path is %s, want var.health_check_path", alb.dir, got)
	}

	// Each environment wires it: the same secret to CloudFront and the load balancer, its ARN
	// to the edge, and health checks the edge lets through.
	svc := serviceTask(t)
	for _, env := range environments {
		dir := filepath.Join(environmentsDir, env)
		m := loadModule(t, dir)
		ctx := deployedContext(t, m, dir)
		for _, mod := range []string{"alb", "cloudfront"} {
			if got := exprAt(m.modules[mod].Body, []string{"origin_secret"}); got != "module.secrets.cdn_origin_secret" {
				t.Errorf("%s: module %s: origin_secret = %s, want module.secrets.cdn_origin_secret", dir, mod, got)
			}
		}
		sctx := evalContext(t, secrets, map[string]cty.Value{"environment_name": moduleArg(t, m, ctx, "secrets", "environment_name")})
		if got, want := eval(t, resourceAttr(t, secrets, "aws_secretsmanager_secret.cdn_origin_secret", "name"), sctx).AsString(), "muejam/"+env+"/cdn-origin-secret"; got != want {
			t.Errorf("%s: the CDN origin secret is %q, want %q", dir, got, want)
		}

		// The load balancer's health checks: on the path the edge exempts, from the subnets it
		// exempts with the task's environment (the load balancer's).
		taskEnv := map[string]string{}
		for name, v := range moduleArg(t, m, ctx, "edge", "environment").AsValueMap() {
			taskEnv[name] = v.AsString()
		}
		exempt := exemptMatchers(readCaddyfile(t, edgeCaddyfile, taskEnv).Directive(t, "client_address"))
		health := moduleArg(t, m, ctx, "alb", "health_check_path").AsString()
		// The load balancer's subnets, and loopback for probes from inside the task.
		proxies := append(strings.Fields(taskEnv["EDGE_TRUSTED_PROXIES"]), "127.0.0.1/8", "::1")
		if !slices.Equal(exempt["path"], []string{health}) || !slices.Equal(exempt["remote_ip"], proxies) || len(exempt) != 2 {
			t.Errorf("%s: with the task's environment, %s's client_address exempts %v, want exactly path %s (the load balancer's health check) from remote_ip %v (EDGE_TRUSTED_PROXIES, the load balancer's subnets, and loopback)", dir, edgeCaddyfile, exempt, health, proxies)
		}

		// The edge's execution role may read the secret, the app server's task role may not.
		mods := ctx.Variables["module"].GetAttr("secrets")
		originARN := mods.GetAttr("cdn_origin_secret_arn").AsString()
		edgeSecrets := moduleArg(t, m, ctx, "edge", "secrets")
		if !edgeSecrets.Type().IsObjectType() || !edgeSecrets.Type().HasAttribute("CDN_ORIGIN_SECRET") {
			t.Errorf("%s: the edge gets no secret CDN_ORIGIN_SECRET", dir)
		} else if got := edgeSecrets.GetAttr("CDN_ORIGIN_SECRET"); !got.RawEquals(cty.StringVal(originARN)) {
			t.Errorf("%s: the edge's secret CDN_ORIGIN_SECRET = %s, want the ARN of muejam/%s/cdn-origin-secret", dir, show(got), env)
		}
		ectx := evalContext(t, svc, map[string]cty.Value{"secrets": cty.MapVal(edgeSecrets.AsValueMap())})
		ectx.Functions = tfFunctions
		exec := checkPolicyDoc(t, dir+": the edge's read-injected-secrets", []byte(eval(t, resourceAttr(t, svc, "aws_iam_role_policy.execution_secrets", "policy"), ectx).AsString()))
		if !policyAllows(exec, "secretsmanager:GetSecretValue", originARN) {
			t.Errorf("%s: the edge's execution role may not read %s", dir, originARN)
		}
		pctx := evalContext(t, m, tfvars(t, dir))
		pctx.Functions = maps.Clone(tfFunctions)
		pctx.Functions["file"] = fileFunc
		for it := moduleArg(t, m, pctx, "appserver", "task_policies").ElementIterator(); it.Next(); {
			k, v := it.Element()
			doc := checkPolicyDoc(t, dir+": app server task policy "+k.AsString(), []byte(v.AsString()))
			for _, action := range []string{"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"} {
				if policyAllows(doc, action, originARN) {
					t.Errorf("%s: the app server's task policy %s allows %s on %s", dir, k.AsString(), action, originARN)
				}
			}
		}

		// No secret's value in any container's plain environment.
		for _, call := range []string{"edge", "appserver", "migrate"} {
			for _, tr := range m.modules[call].Body.Attributes["environment"].Expr.Variables() {
				names := attrNames(tr)
				switch {
				case len(names) >= 3 && names[0] == "module" && names[1] == "secrets" && isSensitiveOutput(t, secrets, names[2]):
					t.Errorf("%s: the %s's environment holds %s, a secret's value: pass its ARN in secrets", dir, call, show(tr))
				case names[0] == "random_password":
					t.Errorf("%s: the %s's environment holds %s", dir, call, show(tr))
				}
			}
		}
	}
}

// TestTrustedNetworks checks whom the edge and the app server trust, in each environment: the
// edge trusts X-Forwarded-For hops, and health checks without the origin secret, from
// EDGE_TRUSTED_PROXIES, exactly the subnets of the load balancer (the public ones); the app
// server trusts X-Auth-User (TRUSTED_EDGE_CIDRS) from the private subnets the edge tasks run in
// and from loopback, where its Service Connect proxy hands it each request, never from the load
// balancer's subnets or a wider network.
func TestTrustedNetworks(t *testing.T) {
	for _, env := range environments {
		dir := filepath.Join(environmentsDir, env)
		m := loadModule(t, dir)
		ctx := deployedContext(t, m, dir)
		public, private := subnetCIDRs(t, m, ctx)
		for _, w := range []struct{ module, arg, want string }{
			{"alb", "subnet_ids", "module.network.public_subnet_ids"},
			{"edge", "subnet_ids", "module.network.private_subnet_ids"},
			{"appserver", "subnet_ids", "module.network.private_subnet_ids"},
		} {
			if got := exprAt(m.modules[w.module].Body, []string{w.arg}); got != w.want {
				t.Errorf("%s: module %s: %s = %s, want %s", dir, w.module, w.arg, got, w.want)
			}
		}
		for _, p := range public {
			for _, q := range private {
				if p.Overlaps(q) {
					t.Fatalf("%s: public subnet %s overlaps private subnet %s", dir, p, q)
				}
			}
		}

		env := func(call, name string) string {
			t.Helper()
			expr, ok := objectItems(m.modules[call].Body.Attributes["environment"].Expr)[name]
			if !ok {
				t.Fatalf("%s: the %s's environment does not set %s", dir, call, name)
			}
			return eval(t, expr, ctx).AsString()
		}

		proxies := env("edge", "EDGE_TRUSTED_PROXIES")
		var got []netip.Prefix
		for _, f := range strings.Fields(proxies) {
			p, err := netip.ParsePrefix(f)
			if err != nil {
				t.Errorf("%s: EDGE_TRUSTED_PROXIES = %q: %v", dir, proxies, err)
			}
			got = append(got, p)
		}
		if !slices.Equal(sortedPrefixes(got), sortedPrefixes(public)) {
			t.Errorf("%s: EDGE_TRUSTED_PROXIES = %q, want the load balancer's subnets %v, space separated", dir, proxies, public)
		}

		trusted := env("appserver", "TRUSTED_EDGE_CIDRS")
		var cidrs []netip.Prefix
		for f := range strings.SplitSeq(trusted, ",") {
			p, err := netip.ParsePrefix(strings.TrimSpace(f))
			if err != nil {
				t.Errorf("%s: TRUSTED_EDGE_CIDRS = %q: %v", dir, trusted, err)
				continue
			}
			cidrs = append(cidrs, p)
			if !slices.Contains(private, p) && !p.Addr().IsLoopback() {
				t.Errorf("%s: TRUSTED_EDGE_CIDRS trusts %s, neither a subnet of the edge tasks nor loopback", dir, p)
			}
			for _, pub := range public {
				if p.Overlaps(pub) {
					t.Errorf("%s: TRUSTED_EDGE_CIDRS trusts %s, which overlaps the load balancer's subnet %s: whatever reaches the app from there could name its user", dir, p, pub)
				}
			}
		}
		for _, p := range private {
			if !slices.Contains(cidrs, p) {
				t.Errorf("%s: TRUSTED_EDGE_CIDRS = %q lacks %s, a subnet the edge tasks run in", dir, trusted, p)
			}
		}
		for _, lo := range []string{"127.0.0.1", "::1"} {
			if !slices.ContainsFunc(cidrs, func(p netip.Prefix) bool { return p.Contains(netip.MustParseAddr(lo)) }) {
				t.Errorf("%s: TRUSTED_EDGE_CIDRS = %q does not trust %s: the app task's Service Connect proxy hands it the edge's requests over loopback", dir, trusted, lo)
			}
		}
	}
}

// checkSecretVariable checks the variable origin_secret of m: required, sensitive, and
// validated as originSecretCases say.
func checkSecretVariable(t *testing.T, m *tfModule) {
	t.Helper()
	v, ok := m.variables["origin_secret"]
	switch {
	case !ok:
		t.Fatalf("%s: no variable origin_secret", m.dir)
	case v.Body.Attributes["default"] != nil:
		t.Errorf("%s: variable origin_secret must have no default", m.dir)
	case v.Body.Attributes["sensitive"] == nil || !eval(t, v.Body.Attributes["sensitive"].Expr, nil).True():
		t.Errorf("%s: variable origin_secret must be sensitive", m.dir)
	}
	for secret, want := range originSecretCases {
		ctx := evalContext(t, m, map[string]cty.Value{"origin_secret": cty.StringVal(secret)})
		ctx.Functions = tfFunctions
		ok := true
		for _, b := range blocks(v.Body, "validation") {
			ok = ok && eval(t, b.Body.Attributes["condition"].Expr, ctx).True()
		}
		if ok != want {
			t.Errorf("%s: variable origin_secret accepts %q: %v, want %v", m.dir, secret, ok, want)
		}
	}
}

// fixedResponseStatus returns the status code of the fixed response of a listener action: a
// fixed_response block, or the content of a dynamic one whose for_each is not empty in ctx.
func fixedResponseStatus(t *testing.T, action *hclsyntax.Block, ctx *hcl.EvalContext) string {
	t.Helper()
	for _, b := range action.Body.Blocks {
		body := b.Body
		switch {
		case b.Type == "fixed_response":
		case b.Type == "dynamic" && len(b.Labels) == 1 && b.Labels[0] == "fixed_response":
			if eval(t, b.Body.Attributes["for_each"].Expr, ctx).LengthInt() == 0 {
				continue
			}
			content := blocks(b.Body, "content")
			if len(content) != 1 {
				t.Fatalf("%s: dynamic fixed_response without one content block", b.Range())
			}
			body = content[0].Body
		default:
			continue
		}
		return eval(t, body.Attributes["status_code"].Expr, ctx).AsString()
	}
	return "<none>"
}

// blocks returns the blocks of type typ directly in body.
func blocks(body *hclsyntax.Body, typ string) []*hclsyntax.Block {
	var bs []*hclsyntax.Block
	for _, b := range body.Blocks {
		if b.Type == typ {
			bs = append(bs, b)
		}
	}
	return bs
}

// evalStrings evaluates the list of strings at path (nested block types, then the attribute) of
// body, which must depend on nothing.
func evalStrings(t *testing.T, body *hclsyntax.Body, path ...string) []string {
	t.Helper()
	for _, typ := range path[:len(path)-1] {
		bs := blocks(body, typ)
		if len(bs) != 1 {
			t.Fatalf("%s: want one %s block, got %d", body.Range(), typ, len(bs))
		}
		body = bs[0].Body
	}
	attr, ok := body.Attributes[path[len(path)-1]]
	if !ok {
		t.Fatalf("%s: no %s", body.Range(), path[len(path)-1])
	}
	var out []string
	for it := eval(t, attr.Expr, nil).ElementIterator(); it.Next(); {
		_, v := it.Element()
		out = append(out, v.AsString())
	}
	return out
}

// references reports whether expr refers to ref (TYPE.NAME.ATTR, indexes ignored).
func references(expr hcl.Expression, ref string) bool {
	return slices.ContainsFunc(expr.Variables(), func(tr hcl.Traversal) bool { return show(tr) == ref })
}

// isSensitiveOutput reports whether the output name of m is sensitive.
func isSensitiveOutput(t *testing.T, m *tfModule, name string) bool {
	t.Helper()
	out, ok := m.outputs[name]
	if !ok {
		t.Fatalf("%s: no output %s", m.dir, name)
	}
	s := out.Body.Attributes["sensitive"]
	return s != nil && eval(t, s.Expr, nil).True()
}

// fileFunc is Terraform's file: the contents of a file, the path relative to this directory.
var fileFunc = function.New(&function.Spec{
	Params: []function.Parameter{{Name: "path", Type: cty.String}},
	Type:   function.StaticReturnType(cty.String),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		data, err := os.ReadFile(args[0].AsString())
		return cty.StringVal(string(data)), err
	},
})

// tfCidrSubnetFunc is Terraform's cidrsubnet(prefix, newbits, netnum), for IPv4.
var tfCidrSubnetFunc = function.New(&function.Spec{
	Params: []function.Parameter{
		{Name: "prefix", Type: cty.String},
		{Name: "newbits", Type: cty.Number},
		{Name: "netnum", Type: cty.Number},
	},
	Type: function.StaticReturnType(cty.String),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		p, err := netip.ParsePrefix(args[0].AsString())
		if err != nil || !p.Addr().Is4() {
			return cty.UnknownVal(cty.String), fmt.Errorf("cidrsubnet: %q is not an IPv4 prefix (%v)", args[0].AsString(), err)
		}
		newbits, _ := args[1].AsBigFloat().Int64()
		netnum, _ := args[2].AsBigFloat().Int64()
		bits := p.Bits() + int(newbits)
		if newbits < 0 || bits > 32 || netnum < 0 || netnum >= 1<<newbits {
			return cty.UnknownVal(cty.String), fmt.Errorf("cidrsubnet(%s, %d, %d): out of range", p, newbits, netnum)
		}
		a := p.Masked().Addr().As4()
		n := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
		n |= uint32(netnum) << (32 - bits)
		addr := netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
		return cty.StringVal(netip.PrefixFrom(addr, bits).String()), nil
	},
})

// refreshLocals evaluates the locals of m that ctx did not know yet and now can, until no more
// can be.
func refreshLocals(m *tfModule, ctx *hcl.EvalContext) {
	locals := map[string]cty.Value{}
	if l, ok := ctx.Variables["local"]; ok && l.LengthInt() > 0 {
		locals = l.AsValueMap()
	}
	for progress := true; progress; {
		progress = false
		for name, expr := range m.locals {
			if _, done := locals[name]; done {
				continue
			}
			if v, diags := expr.Value(ctx); !diags.HasErrors() && v.IsWhollyKnown() {
				locals[name] = v
				ctx.Variables["local"] = cty.ObjectVal(locals)
				progress = true
			}
		}
	}
}

// subnetCIDRs returns the CIDR blocks of the public and the private subnets the network module
// makes for the environment m (its arguments evaluated in ctx), as the module's outputs
// public_subnet_cidrs and private_subnet_cidrs give them.
func subnetCIDRs(t *testing.T, m *tfModule, ctx *hcl.EvalContext) (public, private []netip.Prefix) {
	t.Helper()
	network := loadModule(t, filepath.Join(modulesDir, "network"))
	nctx := evalContext(t, network, map[string]cty.Value{
		"cidr_block": moduleArg(t, m, ctx, "network", "cidr_block"),
		"az_count":   moduleArg(t, m, ctx, "network", "az_count"),
	})
	nctx.Functions = tfFunctions
	azs, _ := nctx.Variables["var"].GetAttr("az_count").AsBigFloat().Int64()
	subnets := map[string]cty.Value{}
	for _, kind := range []string{"public", "private"} {
		var list []cty.Value
		for i := range azs {
			nctx.Variables["count"] = cty.ObjectVal(map[string]cty.Value{"index": cty.NumberIntVal(i)})
			list = append(list, cty.ObjectVal(map[string]cty.Value{
				"id":         cty.StringVal(fmt.Sprintf("subnet-%s-%d", kind, i)),
				"cidr_block": eval(t, resourceAttr(t, network, "aws_subnet."+kind, "cidr_block"), nctx),
			}))
		}
		subnets[kind] = cty.TupleVal(list)
	}
	delete(nctx.Variables, "count")
	nctx.Variables["aws_subnet"] = cty.ObjectVal(subnets)
	out := func(name string) []netip.Prefix {
		o, ok := network.outputs[name]
		if !ok {
			t.Fatalf("%s: no output %s", network.dir, name)
		}
		var ps []netip.Prefix
		for it := eval(t, o.Body.Attributes["value"].Expr, nctx).ElementIterator(); it.Next(); {
			_, v := it.Element()
			p, err := netip.ParsePrefix(v.AsString())
			if err != nil {
				t.Fatalf("%s: output %s: %v", network.dir, name, err)
			}
			ps = append(ps, p)
		}
		if int64(len(ps)) != azs {
			t.Fatalf("%s: output %s has %d subnets, want az_count %d", network.dir, name, len(ps), azs)
		}
		return ps
	}
	return out("public_subnet_cidrs"), out("private_subnet_cidrs")
}

// deployedContext returns the evaluation context of the environment m in dir as deployed: its
// terraform.tfvars, the Terraform functions, the outputs of its module calls that the edge,
// the app server and the migration task take (the network's subnet CIDRs and the secrets' names and ARNs worked out
// from their modules, a string naming the output for the others), and the locals that follow.
func deployedContext(t *testing.T, m *tfModule, dir string) *hcl.EvalContext {
	t.Helper()
	ctx := evalContext(t, m, tfvars(t, dir))
	ctx.Functions = tfFunctions
	outputs := map[string]map[string]cty.Value{"network": {}, "secrets": {}}
	for _, call := range []string{"edge", "appserver", "migrate"} {
		for _, attr := range m.modules[call].Body.Attributes {
			for _, tr := range attr.Expr.Variables() {
				if names := attrNames(tr); len(names) >= 3 && names[0] == "module" {
					if outputs[names[1]] == nil {
						outputs[names[1]] = map[string]cty.Value{}
					}
					outputs[names[1]][names[2]] = cty.StringVal(strings.Join(names[:3], "."))
				}
			}
		}
	}
	public, private := subnetCIDRs(t, m, ctx)
	cidrs := func(ps []netip.Prefix) cty.Value {
		var vs []cty.Value
		for _, p := range ps {
			vs = append(vs, cty.StringVal(p.String()))
		}
		return cty.ListVal(vs)
	}
	outputs["network"]["public_subnet_cidrs"] = cidrs(public)
	outputs["network"]["private_subnet_cidrs"] = cidrs(private)
	secrets := loadModule(t, filepath.Join(modulesDir, "secrets"))
	sctx := evalContext(t, secrets, map[string]cty.Value{"environment_name": moduleArg(t, m, ctx, "secrets", "environment_name")})
	region := ctx.Variables["var"].GetAttr("region").AsString()
	for name, out := range secrets.outputs {
		ref := exprAt(out.Body, []string{"value"})
		parts := strings.Split(ref, ".")
		if len(parts) != 3 || !strings.HasPrefix(parts[0], "aws_secretsmanager_secret") {
			continue
		}
		secret := eval(t, resourceAttr(t, secrets, "aws_secretsmanager_secret."+parts[1], "name"), sctx).AsString()
		switch parts[2] {
		case "name":
			outputs["secrets"][name] = cty.StringVal(secret)
		case "arn":
			outputs["secrets"][name] = cty.StringVal(fmt.Sprintf("arn:aws:secretsmanager:%s:123456789012:secret:%s-AbCdEf", region, secret))
		}
	}
	mods := map[string]cty.Value{}
	for call, outs := range outputs {
		mods[call] = cty.ObjectVal(outs)
	}
	ctx.Variables["module"] = cty.ObjectVal(mods)
	refreshLocals(m, ctx)
	return ctx
}

// readCaddyfile parses the Caddyfile at path with env as the environment: each variable the
// file reads set as env says, or unset.
func readCaddyfile(t *testing.T, path string, env map[string]string) caddyfileread.File {
	t.Helper()
	caddyfileread.Setenv(t, path, env)
	return caddyfileread.Read(t, path)
}

// blockLines returns the lines of the block of seg (a directive with a { } block) at the
// block's top level, each as its tokens, nested blocks left out but for their first line.
func blockLines(seg caddyfile.Segment) [][]caddyfile.Token {
	var lines [][]caddyfile.Token
	depth, line := 0, -1
	for _, tok := range seg {
		switch {
		case tok.Text == "{":
			depth++
			continue
		case tok.Text == "}":
			depth--
			continue
		case depth != 1:
			if depth > 1 && len(lines) > 0 {
				lines[len(lines)-1] = append(lines[len(lines)-1], tok)
			}
			continue
		}
		if tok.Line != line {
			lines = append(lines, nil)
			line = tok.Line
		}
		lines[len(lines)-1] = append(lines[len(lines)-1], tok)
	}
	return lines
}

// blockOption returns the arguments of the option name in the block of seg (an empty, non-nil
// slice for an option without arguments), or nil when it is absent.
func blockOption(seg caddyfile.Segment, name string) []string {
	for _, l := range blockLines(seg) {
		if l[0].Text == name {
			args := []string{}
			for _, tok := range l[1:] {
				if tok.Line == l[0].Line {
					args = append(args, tok.Text)
				}
			}
			return args
		}
	}
	return nil
}

// exemptMatchers returns the matchers of client_address's exempt block, by name, with their
// arguments as written (environment variables already replaced).
func exemptMatchers(seg caddyfile.Segment) map[string][]string {
	matchers := map[string][]string{}
	for _, l := range blockLines(seg) {
		if l[0].Text != "exempt" {
			continue
		}
		byLine := map[int][]string{}
		var order []int
		for _, tok := range l[1:] {
			if _, seen := byLine[tok.Line]; !seen {
				order = append(order, tok.Line)
			}
			byLine[tok.Line] = append(byLine[tok.Line], tok.Text)
		}
		for _, n := range order {
			if toks := byLine[n]; len(toks) > 0 {
				matchers[toks[0]] = toks[1:]
			}
		}
	}
	return matchers
}

// loopbackListen reports whether a listen address (host:port, or a unix socket) is reachable
// from the host's loopback only.
func loopbackListen(addr string) bool {
	if strings.HasPrefix(addr, "unix/") || strings.HasPrefix(addr, "unixgram/") {
		return true
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// portOf returns the port of a host:port address, or "".
func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}

// sortedPrefixes returns ps sorted.
func sortedPrefixes(ps []netip.Prefix) []netip.Prefix {
	return slices.SortedFunc(slices.Values(ps), func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
}
