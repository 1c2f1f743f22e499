package testenv

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Binary returns the path of a binary built under bin/ (bin/caddy, bin/appserver), failing
// the test when it is missing.
func Binary(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(RepoRoot(t), "bin", name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s is missing: run make caddy appserver (make test builds them first)", p)
	}
	return p
}

// Process is a binary a test runs from the repository root, its output kept for the failure
// report.
type Process struct {
	cmd  *exec.Cmd
	env  []string // what Start added to the test's environment, for Restart
	out  lockedBuffer
	once sync.Once
	err  error
}

// Start runs bin with args and the test's environment plus env. When the test ends the
// process gets SIGTERM (SIGKILL 10 s later), and if the test failed its output is written
// whole to .run/test-logs/ and its last lines are logged with that file's path (a long run's
// whole log would push the failure itself out of sight).
func Start(t testing.TB, env []string, bin string, args ...string) *Process {
	t.Helper()
	p := &Process{cmd: exec.Command(bin, args...), env: env}
	p.cmd.Dir = RepoRoot(t)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.terminate(10 * time.Second)
		if t.Failed() {
			p.report(t, filepath.Base(bin))
		}
	})
	return p
}

// reportLines is how many of a failed test's process output lines go into the test's log.
const reportLines = 40

// report writes the process's whole output to .run/test-logs/<test>-<name>-<pid>.log and
// logs its last reportLines lines and that path.
func (p *Process) report(t testing.TB, name string) {
	out := p.out.String()
	dir := filepath.Join(RepoRoot(t), ".run", "test-logs")
	file := filepath.Join(dir, fmt.Sprintf("%s-%s-%d.log", strings.ReplaceAll(t.Name(), "/", "_"), name, p.cmd.Process.Pid))
	where := "not kept: "
	if err := os.MkdirAll(dir, 0o755); err != nil {
		where += err.Error()
	} else if err := os.WriteFile(file, []byte(out), 0o644); err != nil {
		where += err.Error()
	} else {
		where = file
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) > reportLines {
		lines = lines[len(lines)-reportLines:]
	}
	t.Logf("%s output (whole: %s), last %d lines:\n%s", name, where, len(lines), strings.Join(lines, "\n"))
}

// Output returns what the process has written to stdout and stderr so far.
func (p *Process) Output() string { return p.out.String() }

// Stop sends SIGTERM and fails the test unless the process exits cleanly within 20 s.
func (p *Process) Stop(t testing.TB) {
	t.Helper()
	if err := p.terminate(20 * time.Second); err != nil {
		t.Errorf("%s after SIGTERM: %v", p.cmd.Path, err)
	}
}

// Kill kills the process with SIGKILL, as a crash or the OOM killer would (no shutdown
// hooks, connections reset), and waits for it to exit. It fails the test if the process had
// already been stopped.
func (p *Process) Kill(t testing.TB) {
	t.Helper()
	killed := false
	p.once.Do(func() {
		killed = true
		p.cmd.Process.Kill()
		p.err = p.cmd.Wait()
	})
	if !killed {
		t.Fatalf("%s: Kill of a process already stopped", p.cmd.Path)
	}
}

// Restart starts the program of a process that has exited (Kill, Stop) again, with the same
// arguments and environment, as a new Process; the old one keeps its output.
func (p *Process) Restart(t testing.TB) *Process {
	t.Helper()
	if p.cmd.ProcessState == nil {
		t.Fatalf("%s: Restart of a process still running", p.cmd.Path)
	}
	return Start(t, p.env, p.cmd.Path, p.cmd.Args[1:]...)
}

// terminate signals the process once and waits for it; later calls return the same result.
func (p *Process) terminate(grace time.Duration) error {
	p.once.Do(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- p.cmd.Wait() }()
		select {
		case p.err = <-done:
		case <-time.After(grace):
			p.cmd.Process.Kill()
			<-done
			p.err = context.DeadlineExceeded
		}
	})
	return p.err
}

// lockedBuffer is a bytes.Buffer safe for the process's two output streams and the test.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// WaitHTTP waits up to 20 s for url to answer at all (any status).
func WaitHTTP(t testing.TB, url string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s did not answer within 20s", url)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
