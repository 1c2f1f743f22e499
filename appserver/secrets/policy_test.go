package secrets

import (
	"bytes"
	"encoding/json"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// policyFile is the IAM policy the application's role needs for this package.
const policyFile = "../../infra/iam-policies/secrets-manager-policy.json"

// seedOnlyActions are allowed by the seed's policy without this package calling them:
// DescribeSecret reads a secret's metadata (rotation state, stages), never its value.
var seedOnlyActions = []string{"secretsmanager:DescribeSecret"}

// stringOrList is an IAM policy element that may be one string or a list of strings.
type stringOrList []string

func (s *stringOrList) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*s = stringOrList{one}
		return nil
	}
	return json.Unmarshal(b, (*[]string)(s))
}

type policyDoc struct {
	Version   string
	Statement []struct {
		Sid      string
		Effect   string
		Action   stringOrList
		Resource stringOrList
	}
}

// TestIAMPolicy checks infra/iam-policies/secrets-manager-policy.json: valid JSON with only
// the elements it should have (no NotAction, NotResource or Principal), Allow and Deny
// statements, no wildcard action, every resource a secret under muejam/, the allowed actions
// exactly those the package calls (the methods of SecretsManagerClient) plus the seed's
// metadata-only DescribeSecret, and which secrets the role may read.
func TestIAMPolicy(t *testing.T) {
	raw, err := os.ReadFile(policyFile)
	if err != nil {
		t.Fatal(err)
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.DisallowUnknownFields()
	var doc policyDoc
	if err := d.Decode(&doc); err != nil {
		t.Fatalf("%s: %v", policyFile, err)
	}
	if doc.Version != "2012-10-17" {
		t.Errorf("Version = %q, want 2012-10-17", doc.Version)
	}
	if len(doc.Statement) == 0 {
		t.Fatal("no statement")
	}

	var allowed []string
	for i, st := range doc.Statement {
		if st.Effect != "Allow" && st.Effect != "Deny" {
			t.Errorf("statement %d: Effect %q, want Allow or Deny", i, st.Effect)
		}
		if len(st.Action) == 0 || len(st.Resource) == 0 {
			t.Errorf("statement %d: needs Action and Resource", i)
		}
		for _, a := range st.Action {
			if strings.ContainsAny(a, "*?") || !strings.HasPrefix(a, "secretsmanager:") {
				t.Errorf("statement %d: action %q, want a named secretsmanager action, no wildcard", i, a)
			}
			if st.Effect == "Allow" {
				allowed = append(allowed, a)
			}
		}
		for _, res := range st.Resource {
			if !strings.HasPrefix(res, "arn:aws:secretsmanager:") || !strings.HasPrefix(arnResource(res), "secret:muejam/") {
				t.Errorf("statement %d: resource %q, want arn:aws:secretsmanager:REGION:ACCOUNT:secret:muejam/...", i, res)
			}
		}
	}
	// What the role may read: an Allow matches and no Deny does. The log pseudonym key
	// (modules/secrets in the Terraform) is the app server's too: audit events pseudonymise
	// client addresses with it. The CDN origin secret is the edge's alone.
	for arn, want := range map[string]bool{
		"arn:aws:secretsmanager:us-east-1:123456789012:secret:muejam/production/database-AbCdEf":          true,
		"arn:aws:secretsmanager:us-east-1:123456789012:secret:other/production/database-AbCdEf":           false,
		"arn:aws:secretsmanager:us-east-1:123456789012:secret:muejamx/database-AbCdEf":                    false,
		"arn:aws:secretsmanager:us-east-1:123456789012:secret:muejam/production/pii-pseudonym-key-AbCdEf": true,
		"arn:aws:secretsmanager:us-east-1:123456789012:secret:muejam/dev/pii-pseudonym-key-123456":        true,
		"arn:aws:secretsmanager:us-east-1:123456789012:secret:muejam/production/cdn-origin-secret-AbCdEf": false,
	} {
		for _, action := range allowed {
			if got := canDo(doc, action, arn); got != want {
				t.Errorf("%s on %s = %v, want %v", action, arn, got, want)
			}
		}
	}

	var called []string
	api := reflect.TypeFor[SecretsManagerClient]()
	for i := range api.NumMethod() {
		called = append(called, "secretsmanager:"+api.Method(i).Name)
	}
	want := slices.Concat(called, seedOnlyActions)
	slices.Sort(allowed)
	slices.Sort(want)
	if !slices.Equal(slices.Compact(allowed), slices.Compact(want)) {
		t.Errorf("policy allows %q; the package calls %q and the seed adds %q", allowed, called, seedOnlyActions)
	}
}

// canDo evaluates doc for action on arn: a statement of either effect applies when it names
// the action and a resource pattern matches; an applying Deny wins over any Allow.
func canDo(doc policyDoc, action, arn string) bool {
	allowed := false
	for _, st := range doc.Statement {
		if !slices.Contains(st.Action, action) || !slices.ContainsFunc(st.Resource, func(p string) bool { return arnMatch(p, arn) }) {
			continue
		}
		if st.Effect == "Deny" {
			return false
		}
		allowed = allowed || st.Effect == "Allow"
	}
	return allowed
}

// arnResource returns the resource part of an ARN, after arn:partition:service:region:account:.
func arnResource(arn string) string {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) < 6 {
		return ""
	}
	return parts[5]
}

// arnMatch reports whether an IAM resource pattern (* any run of characters, ? one) matches arn.
func arnMatch(pattern, arn string) bool {
	re := regexp.QuoteMeta(pattern)
	re = strings.NewReplacer(`\*`, `.*`, `\?`, `.`).Replace(re)
	return regexp.MustCompile("^" + re + "$").MatchString(arn)
}
