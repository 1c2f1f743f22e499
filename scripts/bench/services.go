package main

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/muejam/edge/internal/promtext"
)

// The HS256 key and claims of the token Auth scenarios send. The key is a fixed bench value:
// it only ever guards a loopback Caddy the harness starts.
const (
	benchJWTSecret   = "muejam-bench-hs256-static-secret-0123456789"
	benchJWTIssuer   = "muejam-bench"
	benchJWTAudience = "muejam-edge"
	benchJWTSubject  = "bench-user"
)

// benchToken mints the HS256 JWT Auth scenarios send, valid from now for ttl.
func benchToken(now time.Time, ttl time.Duration) string {
	enc := base64.RawURLEncoding
	header, _ := json.Marshal(map[string]string{"alg": "HS256", "typ": "JWT"})
	claims, _ := json.Marshal(map[string]any{
		"sub": benchJWTSubject, "iss": benchJWTIssuer, "aud": benchJWTAudience,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(ttl).Unix(),
	})
	signing := enc.EncodeToString(header) + "." + enc.EncodeToString(claims)
	mac := hmac.New(sha256.New, []byte(benchJWTSecret))
	mac.Write([]byte(signing))
	return signing + "." + enc.EncodeToString(mac.Sum(nil))
}

// valkeyBinary returns valkey-server, or redis-server when Valkey is not installed.
func valkeyBinary() (string, error) {
	for _, name := range []string{"valkey-server", "redis-server"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("neither valkey-server nor redis-server is installed (apt-get install valkey-server, or redis-server)")
}

// startValkey starts a private Valkey on a free loopback port, without persistence, and waits
// until it answers PING. It returns its address.
func startValkey(ctx context.Context, ps *procSet, dir, cpus string) (string, error) {
	bin, err := valkeyBinary()
	if err != nil {
		return "", err
	}
	addr, err := freeAddr()
	if err != nil {
		return "", err
	}
	_, port, _ := net.SplitHostPort(addr)
	p, err := ps.start(dir, cpus, bin, "--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no",
		"--protected-mode", "yes", "--dir", dir)
	if err != nil {
		return "", err
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		if err := p.exited(); err != nil {
			return "", err
		}
		reply, err := respCommand(addr, "PING")
		if err == nil && strings.HasPrefix(reply, "+PONG") {
			return addr, nil
		}
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("%s at %s did not answer PING within 15 s: %v (log: %s)", bin, addr, err, p.log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// respCommand sends one inline command to a Valkey at addr and returns its reply: a status or
// error line, or the contents of a bulk string.
func respCommand(addr string, cmd string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, cmd+"\r\n"); err != nil {
		return "", err
	}
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	if !strings.HasPrefix(line, "$") {
		return line, nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(line[1:]))
	if err != nil || n < 0 {
		return "", fmt.Errorf("valkey reply %q", line)
	}
	buf := make([]byte, n+2)
	if _, err := io.ReadFull(r, buf); err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// valkeyScriptCalls is how many EVAL and EVALSHA commands the Valkey at addr has run.
func valkeyScriptCalls(addr string) (int64, error) {
	info, err := respCommand(addr, "INFO commandstats")
	if err != nil {
		return 0, err
	}
	return parseScriptCalls(info), nil
}

// parseScriptCalls sums calls= of cmdstat_eval and cmdstat_evalsha in INFO commandstats.
func parseScriptCalls(info string) int64 {
	var n int64
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || (name != "cmdstat_eval" && name != "cmdstat_evalsha") {
			continue
		}
		for _, kv := range strings.Split(rest, ",") {
			if v, ok := strings.CutPrefix(kv, "calls="); ok {
				c, _ := strconv.ParseInt(v, 10, 64)
				n += c
			}
		}
	}
	return n
}

// metricSum adds up every sample of the metric called name on Caddy's admin /metrics.
func metricSum(ctx context.Context, admin, name string) (float64, error) {
	text, err := promtext.Fetch(ctx, admin)
	if err != nil {
		return 0, err
	}
	return promtext.Sum(text, name, ""), nil
}
