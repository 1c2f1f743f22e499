package main

import (
	"bytes"
	"errors"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestMain lets tests run the real main in a child process: with APPSERVER_RUN_MAIN=1 the
// test binary is the app server.
func TestMain(m *testing.M) {
	if os.Getenv("APPSERVER_RUN_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

func runMain(t *testing.T, env []string, args ...string) (code int, stderr string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), append([]string{"APPSERVER_RUN_MAIN=1"}, env...)...)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), errb.String()
}

func TestMainUsageErrorsExitTwoWithOneLine(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()

	tests := []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"unknown flag", nil, []string{"-no-such-flag"}, "flag provided but not defined"},
		{"malformed DATABASE_URL", []string{"DATABASE_URL=postgres://u:pw@:bad:port/db"}, nil, "invalid DATABASE_URL"},
		{"port in use", []string{"APP_ADDR=" + busy.Addr().String()}, nil, "cannot listen on APP_ADDR " + busy.Addr().String()},
		{"migrate with unknown flag", nil, []string{"migrate", "-x"}, "flag provided but not defined"},
		{"seed with no scale", nil, []string{"seed", "-scale", "0"}, "invalid -scale"},
		{"seed with a negative size", nil, []string{"seed", "-users", "-1"}, "want a number of rows"},
		{"seed with fewer chapters than stories", nil, []string{"seed", "-stories", "10", "-chapters", "5"}, "invalid sizes: chapters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stderr := runMain(t, append(tt.env, "APP_METRICS_ADDR=127.0.0.1:0"), tt.args...)
			if code != 2 {
				t.Errorf("exit status %d, want 2 (stderr %q)", code, stderr)
			}
			if !strings.HasPrefix(stderr, "appserver: ") || !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr = %q, want one line containing %q", stderr, tt.want)
			}
			if strings.Count(stderr, "\n") != 1 || strings.Contains(stderr, "goroutine") {
				t.Errorf("stderr is not one clean line: %q", stderr)
			}
		})
	}
}
