package secrets

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

func TestParseRef(t *testing.T) {
	tests := []struct {
		in      string
		want    Ref
		wantErr string
	}{
		{in: "env:PGPASSWORD", want: Ref{Scheme: SchemeEnv, Name: "PGPASSWORD"}},
		{in: "env:_X1", want: Ref{Scheme: SchemeEnv, Name: "_X1"}},
		{in: "file:/run/secrets/db_password", want: Ref{Scheme: SchemeFile, Name: "/run/secrets/db_password"}},
		{in: "file:relative/pw", want: Ref{Scheme: SchemeFile, Name: "relative/pw"}},
		{in: "aws-sm:muejam/production/database", want: Ref{Scheme: SchemeAWSSM, Name: "muejam/production/database"}},
		{in: "aws-sm:muejam/production/database#password", want: Ref{Scheme: SchemeAWSSM, Name: "muejam/production/database", Key: "password"}},
		{in: "aws-sm:arn:aws:secretsmanager:us-east-1:123456789012:secret:muejam/db-AbCdEf#password",
			want: Ref{Scheme: SchemeAWSSM, Name: "arn:aws:secretsmanager:us-east-1:123456789012:secret:muejam/db-AbCdEf", Key: "password"}},

		{in: "", wantErr: "not a secret reference"},
		{in: "hunter2", wantErr: "not a secret reference"},
		{in: "hunter2:x", wantErr: "not a secret reference"},
		{in: "literal:hunter2", wantErr: "not a secret reference"},
		{in: "env:", wantErr: `invalid env: reference "env:"`},
		{in: "env:1X", wantErr: "invalid env: reference"},
		{in: "env:A-B", wantErr: "invalid env: reference"},
		{in: "file:", wantErr: "invalid file: reference"},
		{in: "aws-sm:", wantErr: "invalid aws-sm: reference"},
		{in: "aws-sm:muejam/db#", wantErr: "invalid aws-sm: reference"},
		{in: "aws-sm:muejam db", wantErr: "invalid aws-sm: reference"},
		{in: "aws-sm:" + strings.Repeat("a", maxSecretID+1), wantErr: "invalid aws-sm: reference"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseRef(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseRef(%q) err = %v, want it to contain %q", tt.in, err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "hunter2") {
					t.Errorf("error repeats the value: %q", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("ParseRef(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			if got.String() != tt.in {
				t.Errorf("String() = %q, want %q", got.String(), tt.in)
			}
		})
	}
}

func TestGetEnv(t *testing.T) {
	r := New(Options{Getenv: func(k string) string { return map[string]string{"PGPASSWORD": "s3cret"}[k] }})
	ctx := t.Context()
	if got, err := r.Get(ctx, "env:PGPASSWORD"); err != nil || got != "s3cret" {
		t.Errorf("Get = %q, %v; want s3cret", got, err)
	}
	_, err := r.Get(ctx, "env:MISSING")
	if err == nil || !strings.Contains(err.Error(), "env:MISSING") {
		t.Errorf("unset variable: err = %v, want it to name env:MISSING", err)
	}
	if _, err := r.Get(ctx, "s3cret"); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("plain value: err = %v, want an error that does not repeat it", err)
	}
}

func TestGetFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return "file:" + p
	}
	r := New(Options{})
	ctx := t.Context()
	for _, tt := range []struct{ name, content, want string }{
		{"plain", "s3cret", "s3cret"},
		{"newline", "s3cret\n", "s3cret"},
		{"crlf", "s3cret\r\n", "s3cret"},
		{"only one newline trimmed", "s3cret\n\n", "s3cret\n"},
		{"inner space kept", " s3 cret \n", " s3 cret "},
	} {
		if got, err := r.Get(ctx, write(tt.name, tt.content)); err != nil || got != tt.want {
			t.Errorf("%s: Get = %q, %v; want %q", tt.name, got, err, tt.want)
		}
	}
	if _, err := r.Get(ctx, write("empty", "\n")); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty file: err = %v, want value is empty", err)
	}
	missing := filepath.Join(dir, "missing")
	if _, err := r.Get(ctx, "file:"+missing); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing file: err = %v, want it to name %s", err, missing)
	}
}

// TestFileInvalidate is a rotation of a mounted secret file: the cached value is served
// until Invalidate, then the new content.
func TestFileInvalidate(t *testing.T) {
	p := filepath.Join(t.TempDir(), "pw")
	ref := "file:" + p
	if err := os.WriteFile(p, []byte("old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := New(Options{})
	get := r.Func(ref)
	if got, err := get(t.Context()); err != nil || got != "old" {
		t.Fatalf("Get = %q, %v; want old", got, err)
	}
	if err := os.WriteFile(p, []byte("new\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, _ := get(t.Context()); got != "old" {
		t.Errorf("before Invalidate: %q, want the cached old", got)
	}
	r.Invalidate(ref)
	if got, err := get(t.Context()); err != nil || got != "new" {
		t.Errorf("after Invalidate: %q, %v; want new", got, err)
	}
}

// TestEnvTTL counts reads of the environment: one per TTL, on the fake clock of synctest.
func TestEnvTTL(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reads := 0
		r := New(Options{TTL: time.Minute, Getenv: func(string) string { reads++; return "v" }})
		for range 3 {
			if _, err := r.Get(t.Context(), "env:X"); err != nil {
				t.Fatal(err)
			}
		}
		advanceFakeClock(59 * time.Second)
		if _, err := r.Get(t.Context(), "env:X"); err != nil {
			t.Fatal(err)
		}
		if reads != 1 {
			t.Errorf("reads within the TTL = %d, want 1", reads)
		}
		advanceFakeClock(2 * time.Second)
		if _, err := r.Get(t.Context(), "env:X"); err != nil {
			t.Fatal(err)
		}
		if reads != 2 {
			t.Errorf("reads after the TTL = %d, want 2", reads)
		}
	})
}

func TestDefaultTTL(t *testing.T) {
	if r := New(Options{}); r.ttl != DefaultTTL {
		t.Errorf("ttl = %v, want %v", r.ttl, DefaultTTL)
	}
}

// advanceFakeClock moves the clock of the synctest bubble it is called in: time.Sleep there
// returns at once, with the bubble's clock moved on by d once every goroutine is blocked.
func advanceFakeClock(d time.Duration) { time.Sleep(d) }
