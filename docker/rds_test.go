package docker

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// rdsBundleURL is where AWS publishes the CA bundle of Amazon RDS for every region. The images
// fetch it when they are built; no test fetches it (this machine cannot reach it).
const rdsBundleURL = "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"

// terraformRoot is the Terraform whose DATABASE_URLs name the bundle (sslrootcert).
const terraformRoot = "../infra/terraform/root/main.tf"

// sslRootCert finds the local db_ca_bundle of the Terraform: the path of the bundle in the images.
var sslRootCert = regexp.MustCompile(`(?m)^\s*db_ca_bundle\s*=\s*"([^"]+)"`)

// TestRDSCABundle checks, in the text of the Dockerfiles of the images that connect to RDS (the
// app server and the migration task), that a build stage downloads the RDS CA bundle from AWS
// over HTTPS, failing the build when the download fails, and that the final image has it at the
// path the Terraform's DATABASE_URLs give as sslrootcert with sslmode=verify-full.
func TestRDSCABundle(t *testing.T) {
	tf, err := os.ReadFile(terraformRoot)
	if err != nil {
		t.Fatal(err)
	}
	m := sslRootCert.FindSubmatch(tf)
	if m == nil {
		t.Fatalf("%s: no local db_ca_bundle", terraformRoot)
	}
	bundle := string(m[1])
	if !strings.Contains(string(tf), "sslmode=verify-full&sslrootcert=${local.db_ca_bundle}") {
		t.Errorf("%s: the database URLs do not use sslmode=verify-full&sslrootcert=${local.db_ca_bundle}", terraformRoot)
	}
	for _, path := range []string{"appserver.Dockerfile", "migrate.Dockerfile"} {
		df := parseDockerfile(t, path)
		var fetched string
		for _, run := range df.runs {
			if !strings.Contains(run, rdsBundleURL) {
				continue
			}
			out := regexp.MustCompile(`--output\s+(\S+)`).FindStringSubmatch(run)
			if !strings.HasPrefix(run, "curl ") || !strings.Contains(run, "--fail") || !strings.Contains(run, "--proto '=https'") || out == nil {
				t.Errorf("%s: RUN %q: want curl --fail --proto '=https' ... --output FILE %s", path, run, rdsBundleURL)
				continue
			}
			fetched = out[1]
		}
		if fetched == "" {
			t.Errorf("%s: no RUN downloads %s at build time", path, rdsBundleURL)
			continue
		}
		if got := df.stageCopy[bundle]; got != fetched {
			t.Errorf("%s: the image's %s (sslrootcert in %s) comes from %q, want the downloaded %s", path, bundle, terraformRoot, got, fetched)
		}
	}
}

// TestMigrateImage checks the migration task's image: its entrypoint is
// docker/migrate-entrypoint.sh, copied from the build context, which applies the app server's
// migrations, stops at the first error, and gives the app server's login role muejam_app (the
// role with DML only that migration 0005 creates) and nothing more.
func TestMigrateImage(t *testing.T) {
	const script = "migrate-entrypoint.sh"
	df := parseDockerfile(t, "migrate.Dockerfile")
	if len(df.entrypoint) != 1 || df.copyTo[df.entrypoint[0]] != "docker/"+script {
		t.Errorf("migrate.Dockerfile: ENTRYPOINT %q, want the copy of docker/%s", df.entrypoint, script)
	}
	data, err := os.ReadFile(script)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	for _, want := range []string{"set -eu", "/usr/local/bin/appserver migrate", "ON_ERROR_STOP=1", `grant muejam_app to :"app_user"`, "nosuperuser nocreatedb nocreaterole"} {
		if !strings.Contains(text, want) {
			t.Errorf("%s does not contain %q", script, want)
		}
	}
	if regexp.MustCompile(`(?i)grant\s+(all|create|rds_superuser)`).MatchString(text) {
		t.Errorf("%s grants more than muejam_app's DML", script)
	}
	if st, err := os.Stat(script); err != nil || st.Mode()&0o111 == 0 {
		t.Errorf("%s is not executable (%v)", script, err)
	}
}
