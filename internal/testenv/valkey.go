package testenv

import (
	"bufio"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// NewValkey starts a private Valkey (or Redis) server on a free loopback port for one test,
// with nothing kept on disk, and stops it when the test ends. Tests that run the dev
// Caddyfile give it to the edge (VALKEY_ADDR), so limiter counters shared through Valkey
// never leak between tests or runs.
func NewValkey(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("valkey-server")
	if err != nil {
		if bin, err = exec.LookPath("redis-server"); err != nil {
			t.Fatal("neither valkey-server nor redis-server is installed (run `make services-up`)")
		}
	}
	addr := FreeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", t.TempDir())
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if ping(addr) {
			return addr
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s on %s did not answer PING within 10s", bin, addr)
	return ""
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
