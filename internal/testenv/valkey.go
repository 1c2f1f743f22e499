package testenv

import (
	"bufio"
	"net"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// NewValkey starts a private Valkey (or Redis) server on a free loopback port for one test,
// with nothing kept on disk, and stops it when the test ends. Tests that run the dev
// Caddyfile give it to the edge (VALKEY_ADDR), so limiter counters shared through Valkey
// never leak between tests or runs.
func NewValkey(t testing.TB) string {
	t.Helper()
	return StartValkey(t).Addr
}

// Valkey is a private Valkey (or Redis) server that a test can take down (Stop, Freeze) and
// bring back (Start) on the same address, to see what its clients do meanwhile.
type Valkey struct {
	// Addr is the server's 127.0.0.1:PORT, the same across restarts.
	Addr string

	bin, dir string
	mu       sync.Mutex
	cmd      *exec.Cmd // nil while stopped
}

// StartValkey starts a private server as NewValkey does and returns it; it is killed when
// the test ends.
func StartValkey(t testing.TB) *Valkey {
	t.Helper()
	bin, err := exec.LookPath("valkey-server")
	if err != nil {
		if bin, err = exec.LookPath("redis-server"); err != nil {
			t.Fatal("neither valkey-server nor redis-server is installed (run `make services-up`)")
		}
	}
	v := &Valkey{Addr: FreeAddr(t), bin: bin, dir: t.TempDir()}
	t.Cleanup(func() { v.kill() })
	v.Start(t)
	return v
}

// Start starts the server (again, empty) on Addr and waits up to 10 s for it to answer PING.
func (v *Valkey) Start(t testing.TB) {
	t.Helper()
	_, port, _ := net.SplitHostPort(v.Addr)
	cmd := exec.Command(v.bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", v.dir)
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", v.bin, err)
	}
	v.mu.Lock()
	v.cmd = cmd
	v.mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if ping(v.Addr) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s on %s did not answer PING within 10s", v.bin, v.Addr)
}

// Stop kills the server (SIGKILL, as a crash would: its clients' connections are reset and
// new ones refused) and waits for it to exit.
func (v *Valkey) Stop(t testing.TB) {
	t.Helper()
	if !v.kill() {
		t.Fatalf("valkey on %s is not running", v.Addr)
	}
}

// Freeze suspends the server (SIGSTOP): connections stay open and new ones are accepted by
// the kernel, but nothing is answered, as with a server stuck or far too slow. Stop ends it.
func (v *Valkey) Freeze(t testing.TB) {
	t.Helper()
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.cmd == nil {
		t.Fatalf("valkey on %s is not running", v.Addr)
	}
	if err := v.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatalf("freezing valkey on %s: %v", v.Addr, err)
	}
}

// kill kills the server if it runs and reports whether it did.
func (v *Valkey) kill() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.cmd == nil {
		return false
	}
	v.cmd.Process.Kill()
	v.cmd.Wait()
	v.cmd = nil
	return true
}

// ping reports whether a server on addr answers PING with PONG.
func ping(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "+PONG")
}
