package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/muejam/edge/internal/promtext"
	"github.com/muejam/edge/internal/testjwt"
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
	return benchTokenFor(benchJWTSubject, now, ttl)
}

// benchTokenFor mints the HS256 JWT of user sub, valid from now for ttl.
func benchTokenFor(sub string, now time.Time, ttl time.Duration) string {
	return testjwt.HS256(benchJWTSecret, testjwt.Valid(sub, benchJWTIssuer, benchJWTAudience, now, ttl))
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
	if err := waitValkey(ctx, p, addr, "PING", "+PONG", 15*time.Second); err != nil {
		return "", err
	}
	return addr, nil
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

// valkeyCalls is how many calls of commands (INFO commandstats names without "cmdstat_")
// the Valkey servers at addrs have run, summed: for a cluster, over its primaries.
func valkeyCalls(addrs, commands []string) (int64, error) {
	if len(addrs) == 0 {
		return 0, errors.New("no Valkey to count commands on")
	}
	var n int64
	for _, addr := range addrs {
		info, err := respCommand(addr, "INFO commandstats")
		if err != nil {
			return 0, fmt.Errorf("%s: %w", addr, err)
		}
		n += parseCalls(info, commands)
	}
	return n, nil
}

// parseCalls sums calls= of cmdstat_<command> in INFO commandstats for each of commands.
func parseCalls(info string, commands []string) int64 {
	var n int64
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !slices.ContainsFunc(commands, func(c string) bool { return name == "cmdstat_"+c }) {
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

// readMetrics returns the current sum of each of c's Metrics on the Caddy whose admin
// endpoint is admin (nothing to read when c has none).
func (c *ValkeyCheck) readMetrics(ctx context.Context, admin string) ([]float64, error) {
	if len(c.Metrics) == 0 {
		return nil, nil
	}
	text, err := promtext.Fetch(ctx, admin)
	if err != nil {
		return nil, fmt.Errorf("caddy metrics: %w", err)
	}
	v := make([]float64, len(c.Metrics))
	for i, m := range c.Metrics {
		v[i] = promtext.Sum(text, m.Name, m.Labels)
	}
	return v, nil
}

// valkeyCLI returns valkey-cli, or redis-cli when Valkey is not installed.
func valkeyCLI() (string, error) {
	for _, name := range []string{"valkey-cli", "redis-cli"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("neither valkey-cli nor redis-cli is installed (apt-get install valkey-tools, or redis-tools)")
}

// clusterPrimaries is how many nodes the bench's Valkey Cluster has: primaries only, no
// replicas (a replica would only add replication traffic to the measurement).
const clusterPrimaries = 3

// startValkeyCluster starts a private Valkey Cluster of clusterPrimaries primaries on free
// loopback ports, without persistence (each node's nodes.conf in its directory under dir),
// creates it with `valkey-cli --cluster create` (or redis-cli) and waits until every node
// says cluster_state:ok with the 16384 slots assigned and ok. It returns the nodes'
// addresses, which a client is given as seeds. A node's cluster bus listens on its port +
// 10000, so the ports are at most 55535 and their bus ports free too.
func startValkeyCluster(ctx context.Context, ps *procSet, dir, cpus string) ([]string, error) {
	bin, err := valkeyBinary()
	if err != nil {
		return nil, err
	}
	cli, err := valkeyCLI()
	if err != nil {
		return nil, err
	}
	var addrs []string
	var procs []*proc
	for len(addrs) < clusterPrimaries {
		addr, err := clusterAddr(addrs)
		if err != nil {
			return nil, err
		}
		_, port, _ := net.SplitHostPort(addr)
		nodeDir := filepath.Join(dir, port)
		p, err := ps.start(nodeDir, cpus, bin, "--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no",
			"--protected-mode", "yes", "--dir", nodeDir, "--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(nodeDir, "nodes.conf"), "--cluster-node-timeout", "5000")
		if err != nil {
			return nil, err
		}
		addrs, procs = append(addrs, addr), append(procs, p)
	}
	for i, addr := range addrs {
		if err := waitValkey(ctx, procs[i], addr, "PING", "+PONG", 15*time.Second); err != nil {
			return nil, err
		}
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(cctx, cli, args...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("%s --cluster create %s: %v\n%s", cli, strings.Join(addrs, " "), err, out)
	}
	for i, addr := range addrs {
		if err := waitValkey(ctx, procs[i], addr, "CLUSTER INFO", "", 20*time.Second); err != nil {
			return nil, err
		}
	}
	return addrs, nil
}

// clusterAddr returns 127.0.0.1:PORT for a free port, not in taken, at most 55535, whose
// cluster bus port (PORT + 10000) is free and not reserved either.
func clusterAddr(taken []string) (string, error) {
	for range 50 {
		addr, err := freeAddr()
		if err != nil {
			return "", err
		}
		_, p, _ := net.SplitHostPort(addr)
		port, _ := strconv.Atoi(p)
		bus := port + 10000
		if port > 55535 || slices.Contains(taken, addr) || slices.Contains(reservedPorts, bus) {
			continue
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(bus))
		if err != nil {
			continue
		}
		l.Close()
		return addr, nil
	}
	return "", errors.New("no free port at most 55535 with a free cluster bus port (+10000)")
}

// waitValkey waits until the server at addr answers cmd with a reply starting with want
// or, for CLUSTER INFO (want empty), says cluster_state:ok with every slot assigned and ok.
func waitValkey(ctx context.Context, p *proc, addr, cmd, want string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if err := p.exited(); err != nil {
			return err
		}
		reply, err := respCommand(addr, cmd)
		if err == nil {
			if want != "" && strings.HasPrefix(reply, want) || want == "" && clusterReady(reply) {
				return nil
			}
			err = fmt.Errorf("%s: %q", cmd, firstLine(reply))
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("Valkey at %s not ready within %s: %v (log: %s)", addr, timeout, err, p.log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// clusterReady reports whether a node's CLUSTER INFO says the cluster is usable: state ok,
// the 16384 slots assigned and ok.
func clusterReady(info string) bool {
	fields := map[string]string{}
	for _, line := range strings.Split(info, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			fields[k] = v
		}
	}
	return fields["cluster_state"] == "ok" && fields["cluster_slots_assigned"] == "16384" && fields["cluster_slots_ok"] == "16384"
}
