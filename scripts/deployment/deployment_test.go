// Package deployment_test checks the deployment scripts: the command sequences deploy.sh and
// rollback.sh print under --dry-run, with stand-ins for docker, aws, jq and terraform on PATH
// that fail the test if anything runs them, and smoke-tests.sh against local servers that
// imitate the edge, its admin endpoint and the app server's metrics listener.
package deployment_test

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
)

// tools are the commands the scripts run for real outside --dry-run.
var tools = []string{"aws", "docker", "jq", "terraform", "curl"}

// script runs a script of this directory with args and the extra environment env, with
// stand-ins for tools on PATH that record being run. It returns the standard output and the
// exit error, and fails the test if a stand-in ran.
func script(t *testing.T, name string, env []string, args ...string) (string, error) {
	t.Helper()
	bin := t.TempDir()
	ran := filepath.Join(t.TempDir(), "ran")
	for _, tool := range tools {
		stub := fmt.Sprintf("#!/bin/sh\necho %s \"$@\" >>%q\nexit 97\n", tool, ran)
		if err := os.WriteFile(filepath.Join(bin, tool), []byte(stub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("bash", name)
	cmd.Args = append(cmd.Args, args...)
	cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"),
		"VERSION=v-test", "AWS_REGION=eu-west-1", "REGISTRY=", "BASE_URL=")
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if data, _ := os.ReadFile(ran); len(data) > 0 {
		t.Errorf("%s %v ran commands instead of printing them:\n%s", name, args, data)
	}
	if err != nil && !isExit(err) {
		t.Fatal(err)
	}
	t.Logf("%s %v stderr:\n%s", name, args, stderr.String())
	return stdout.String(), err
}

// isExit reports whether err is a non-zero exit status.
func isExit(err error) bool {
	var exit *exec.ExitError
	return errors.As(err, &exit)
}

// checkSequence checks that every line of out is a printed command ("+ ...") and that
// the lines match want in order (other lines may come between).
func checkSequence(t *testing.T, out string, want []string) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for _, l := range lines {
		if !strings.HasPrefix(l, "+ ") {
			t.Errorf("dry-run output line %q is not a printed command", l)
		}
	}
	i := 0
	for _, l := range lines {
		if i < len(want) && regexp.MustCompile(want[i]).MatchString(l) {
			i++
		}
	}
	if i < len(want) {
		t.Errorf("dry-run output lacks, in order, a line matching %q (after the %d before it); got:\n%s", want[i], i, out)
	}
}

func TestDeployDryRun(t *testing.T) {
	out, err := script(t, "deploy.sh", nil, "staging", "--dry-run")
	if err != nil {
		t.Fatalf("deploy.sh staging --dry-run: %v\n%s", err, out)
	}
	const image = `ACCOUNT_ID\.dkr\.ecr\.eu-west-1\.amazonaws\.com/muejam/`
	want := []string{
		`^\+ aws sts get-caller-identity`,
		`^\+ aws ecr get-login-password --region eu-west-1 \| docker login .*--password-stdin ACCOUNT_ID\.dkr\.ecr\.eu-west-1\.amazonaws\.com$`,
		`^\+ docker build --file \S+/docker/appserver\.Dockerfile --tag ` + image + `appserver:v-test \S+$`,
		`^\+ docker build --file \S+/docker/edge\.Dockerfile --tag ` + image + `edge:v-test \S+$`,
		`^\+ docker build --file \S+/docker/migrate\.Dockerfile --tag ` + image + `migrate:v-test \S+$`,
		`^\+ docker push ` + image + `appserver:v-test$`,
		`^\+ docker push ` + image + `edge:v-test$`,
		`^\+ docker push ` + image + `migrate:v-test$`,
	}
	// The migration, before any service is updated: a revision of the migrate task with the
	// new image (its container is named migrate, infra/terraform/modules/ecs-task), run on
	// Fargate in the appserver service's subnets and security groups without a public IP,
	// waited for, and its container's exit code read.
	const awsvpc = `'services\[0\]\.networkConfiguration\.awsvpcConfiguration\.`
	migration := []string{
		`^\+ aws ecs describe-task-definition .*--task-definition muejam-staging-migrate .*> \S+/migrate\.json$`,
		`^\+ jq --arg name migrate --arg image ` + image + `migrate:v-test .*> \S+/migrate-new\.json$`,
		`^\+ aws ecs register-task-definition .*--cli-input-json file://\S+/migrate-new\.json`,
		`^\+ aws ecs describe-services .*--cluster muejam-staging --services appserver --query ` + awsvpc + `subnets' --output text$`,
		`^\+ aws ecs describe-services .*--cluster muejam-staging --services appserver --query ` + awsvpc + `securityGroups' --output text$`,
		`^\+ aws ecs run-task .*--cluster muejam-staging --launch-type FARGATE --task-definition MIGRATE_TASK_DEFINITION_ARN .*` +
			`--network-configuration 'awsvpcConfiguration=\{subnets=\[SUBNETS\],securityGroups=\[SECURITY_GROUPS\],assignPublicIp=DISABLED\}' ` +
			`--query 'tasks\[0\]\.taskArn' --output text$`,
		`^\+ aws ecs wait tasks-stopped .*--cluster muejam-staging --tasks MIGRATE_TASK_ARN$`,
		`^\+ aws ecs describe-tasks .*--cluster muejam-staging --tasks MIGRATE_TASK_ARN --query 'tasks\[0\]\.containers\[0\]\.exitCode' --output text$`,
	}
	want = append(want, migration...)
	for _, svc := range []string{"appserver", "edge"} {
		want = append(want,
			`^\+ aws ecs describe-task-definition .*--task-definition muejam-staging-`+svc+` .*> \S+/`+svc+`\.json$`,
			`^\+ jq .*--arg image `+image+svc+`:v-test .*> \S+/`+svc+`-new\.json$`,
			`^\+ aws ecs register-task-definition .*--cli-input-json file://\S+/`+svc+`-new\.json`,
			`^\+ aws ecs update-service .*--cluster muejam-staging --service `+svc+` --task-definition `+strings.ToUpper(svc)+`_TASK_DEFINITION_ARN$`,
			`^\+ aws ecs wait services-stable .*--cluster muejam-staging --services `+svc+`$`,
		)
	}
	want = append(want,
		`^\+ terraform -chdir=\S+/infra/terraform/environments/staging output -raw base_url$`,
		`^\+ env EDGE_METRICS_URL= APP_METRICS_URL= \S+/scripts/deployment/smoke-tests\.sh BASE_URL$`,
	)
	checkSequence(t, out, want)

	// No service is updated before the migration has run and its exit code been read.
	lastMigration := regexp.MustCompile(migration[len(migration)-1])
	for _, l := range strings.Split(out, "\n") {
		if lastMigration.MatchString(l) {
			break
		}
		if strings.HasPrefix(l, "+ aws ecs update-service ") {
			t.Errorf("deploy.sh updates a service before reading the migration's exit code: %q", l)
		}
	}
}

func TestRollbackDryRun(t *testing.T) {
	for _, c := range []struct {
		args    []string
		service string
	}{
		{[]string{"production", "42", "--dry-run"}, "appserver"},
		{[]string{"--dry-run", "production", "42", "--service", "edge"}, "edge"},
	} {
		out, err := script(t, "rollback.sh", []string{"BASE_URL=https://muejam.example"}, c.args...)
		if err != nil {
			t.Fatalf("rollback.sh %v: %v\n%s", c.args, err, out)
		}
		td := "muejam-production-" + c.service + ":42"
		checkSequence(t, out, []string{
			`^\+ aws ecs describe-task-definition .*--task-definition ` + td + ` `,
			`^\+ aws ecs update-service .*--cluster muejam-production --service ` + c.service + ` --task-definition ` + td + `$`,
			`^\+ aws ecs wait services-stable .*--cluster muejam-production --services ` + c.service + `$`,
			`^\+ env EDGE_METRICS_URL= APP_METRICS_URL= \S+/smoke-tests\.sh https://muejam\.example$`,
		})
	}
}

func TestScriptsRefuseBadArguments(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
	}{
		{"deploy.sh", []string{"qa", "--dry-run"}},
		{"deploy.sh", []string{"--dry-run"}},
		{"deploy.sh", []string{"staging", "production", "--dry-run"}},
		{"rollback.sh", []string{"production", "--dry-run"}},
		{"rollback.sh", []string{"production", "latest", "--dry-run"}},
		{"rollback.sh", []string{"production", "42", "--service", "db", "--dry-run"}},
		{"smoke-tests.sh", nil},
	} {
		if out, err := script(t, c.name, nil, c.args...); err == nil {
			t.Errorf("%s %v succeeded:\n%s", c.name, c.args, out)
		}
	}
}

// stack imitates the local stack for smoke-tests.sh: the edge, its admin endpoint and the
// app server's metrics listener.
type stack struct {
	health      int    // status of /v1/health; its body says healthy when 200
	metrics     bool   // the metrics endpoints serve Prometheus text
	publicMeta  bool   // the edge serves /metrics too
	cacheStatus string // Cache-Status of the second read of the cached path, "" for none
	rateLimit   map[string]string
}

// start serves s and returns the environment and the base URL for smoke-tests.sh.
func (s stack) start(t *testing.T) (env []string, base string) {
	t.Helper()
	metrics := func(w http.ResponseWriter, r *http.Request) {
		if !s.metrics {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, "# HELP up Up.\n# TYPE up gauge\nup 1\n")
	}
	var reads atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/health", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(s.health)
		status := "unhealthy"
		if s.health == http.StatusOK {
			status = "healthy"
		}
		fmt.Fprintf(w, `{"status": %q, "checks": {}}`, status)
	})
	mux.HandleFunc("GET /v1/discover", func(w http.ResponseWriter, r *http.Request) {
		n := reads.Add(1)
		if s.cacheStatus != "" {
			status := s.cacheStatus
			if n%2 == 1 {
				status = "edge; fwd=miss; stored"
			}
			w.Header().Set("Cache-Status", status)
		}
		for k, v := range s.rateLimit {
			w.Header().Set(k, v)
		}
		fmt.Fprint(w, `{"data": []}`)
	})
	if s.publicMeta {
		mux.HandleFunc("GET /metrics", metrics)
	}
	edge := httptest.NewServer(mux)
	admin := httptest.NewServer(http.HandlerFunc(metrics))
	app := httptest.NewServer(http.HandlerFunc(metrics))
	t.Cleanup(func() { edge.Close(); admin.Close(); app.Close() })
	return []string{"EDGE_METRICS_URL=" + admin.URL + "/metrics", "APP_METRICS_URL=" + app.URL + "/metrics"}, edge.URL
}

func TestSmokeTests(t *testing.T) {
	healthy := stack{health: http.StatusOK, metrics: true}
	withFeatures := healthy
	withFeatures.cacheStatus = "edge; hit; ttl=55"
	withFeatures.rateLimit = map[string]string{"RateLimit-Limit": "100", "RateLimit-Remaining": "99"}
	draftHeader := healthy
	draftHeader.rateLimit = map[string]string{"RateLimit": `"user";r=99;t=60`}
	unhealthy := healthy
	unhealthy.health = http.StatusServiceUnavailable
	noMetrics := healthy
	noMetrics.metrics = false
	public := healthy
	public.publicMeta = true
	neverHit := healthy
	neverHit.cacheStatus = "edge; fwd=uri-miss"
	badLimit := healthy
	badLimit.rateLimit = map[string]string{"RateLimit-Limit": "100", "RateLimit-Remaining": "101"}

	for _, c := range []struct {
		name  string
		stack stack
		fail  bool
		want  []string // lines of the output, as regexps
	}{
		{"healthy, no cache or limiter yet", healthy, false, []string{
			`^ok +health`, `^ok +metrics of the edge`, `^ok +metrics of the app`, `^ok +metrics private`,
			`^skip +cached read: not yet available`, `^skip +rate limit: not yet available`,
			`4 passed, 0 failed, 2 skipped$`}},
		{"cache and limiter deployed", withFeatures, false, []string{
			`^ok +cached read: second GET /v1/discover\?tab=new was a hit`, `^ok +rate limit: RateLimit-Limit 100`,
			`6 passed, 0 failed, 0 skipped$`}},
		{"structured RateLimit header", draftHeader, false, []string{`^ok +rate limit: RateLimit: "user";r=99`}},
		{"unhealthy", unhealthy, true, []string{`^FAIL +health: .* answered 503`}},
		{"no metrics", noMetrics, true, []string{`^FAIL +metrics of the edge`, `^FAIL +metrics of the app`}},
		{"metrics through the edge", public, true, []string{`^FAIL +metrics private`}},
		{"cache never hits", neverHit, true, []string{`^FAIL +cached read`}},
		{"remaining above limit", badLimit, true, []string{`^FAIL +rate limit`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			env, base := c.stack.start(t)
			out, err := smoke(t, env, base)
			if (err != nil) != c.fail {
				t.Errorf("exit error %v, want failure %v; output:\n%s", err, c.fail, out)
			}
			for _, w := range c.want {
				if !regexp.MustCompile(`(?m)` + w).MatchString(out) {
					t.Errorf("output lacks a line matching %q:\n%s", w, out)
				}
			}
		})
	}

	t.Run("metrics off", func(t *testing.T) {
		_, base := healthy.start(t)
		out, err := smoke(t, []string{"EDGE_METRICS_URL=", "APP_METRICS_URL="}, base)
		if err != nil || !strings.Contains(out, "EDGE_METRICS_URL is empty") || !strings.Contains(out, "APP_METRICS_URL is empty") {
			t.Errorf("with empty metrics URLs: %v\n%s", err, out)
		}
	})
	t.Run("no answer", func(t *testing.T) {
		env, base := healthy.start(t)
		srv := httptest.NewServer(http.NotFoundHandler())
		srv.Close() // a port that refuses connections
		out, err := smoke(t, env, srv.URL)
		if err == nil || strings.Contains(out, "not yet available") {
			t.Errorf("against %s (closed; the stack is at %s): %v\n%s", srv.URL, base, err, out)
		}
	})
}

// smoke runs smoke-tests.sh against base with the extra environment env.
func smoke(t *testing.T, env []string, base string) (string, error) {
	t.Helper()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("smoke-tests.sh needs curl")
	}
	cmd := exec.Command("bash", "smoke-tests.sh", base)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil && !isExit(err) {
		t.Fatal(err)
	}
	return string(out), err
}
