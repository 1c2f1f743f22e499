package deployment_test

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// deployWorkflow is the GitHub Actions workflow that runs deploy.sh.
const deployWorkflow = "../../.github/workflows/deploy.yml"

// workflow is the part of a GitHub Actions workflow the test reads.
type workflow struct {
	Jobs map[string]struct {
		Needs       any    `yaml:"needs"`
		Environment string `yaml:"environment"`
		Steps       []step `yaml:"steps"`
	} `yaml:"jobs"`
}

// step is one step of a job.
type step struct {
	Run string `yaml:"run"`
}

// TestDeployWorkflow checks the seed's continuous deployment: a job per environment in the
// GitHub environment of its name that runs deploy.sh for it, staging before production.
func TestDeployWorkflow(t *testing.T) {
	data, err := os.ReadFile(deployWorkflow)
	if err != nil {
		t.Fatal(err)
	}
	var w workflow
	if err := yaml.Unmarshal(data, &w); err != nil {
		t.Fatalf("%s: %v", deployWorkflow, err)
	}
	for env, needs := range map[string]string{"staging": "", "production": "deploy-staging"} {
		job, ok := w.Jobs["deploy-"+env]
		if !ok {
			t.Errorf("%s has no job deploy-%s", deployWorkflow, env)
			continue
		}
		if job.Environment != env {
			t.Errorf("job deploy-%s runs in the GitHub environment %q, want %q (the deploy role trusts only it)", env, job.Environment, env)
		}
		deploy := regexp.MustCompile(`(^|\s)\./scripts/deployment/deploy\.sh ` + env + `(\s|$)`)
		if !slices.ContainsFunc(job.Steps, func(s step) bool { return deploy.MatchString(strings.TrimSpace(s.Run)) }) {
			t.Errorf("job deploy-%s does not run ./scripts/deployment/deploy.sh %s", env, env)
		}
		if needs != "" && job.Needs != needs {
			t.Errorf("job deploy-%s needs %v, want %s", env, job.Needs, needs)
		}
	}
}
