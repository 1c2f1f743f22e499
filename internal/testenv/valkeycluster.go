package testenv

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/muejam/edge/internal/freeport"
)

// ValkeyClusterAddrs are the seed addresses of the shared dev Valkey Cluster that
// scripts/services.sh starts on 127.0.0.1:47001-47006 (3 primaries, 3 replicas): the first
// three nodes, as a client is given them. VALKEY_CLUSTER_ADDRS (comma-separated) overrides
// them.
var ValkeyClusterAddrs = splitAddrs(envOr("VALKEY_CLUSTER_ADDRS", "127.0.0.1:47001,127.0.0.1:47002,127.0.0.1:47003"))

func splitAddrs(s string) []string {
	var addrs []string
	for a := range strings.SplitSeq(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	return addrs
}

// RequireValkeyCluster returns ValkeyClusterAddrs after checking that every seed answers
// CLUSTER INFO with cluster_state:ok; it fails the test otherwise (`make test` starts the
// cluster). The shared cluster is for tests that only read and write: tests that kill,
// freeze or reshard nodes use StartValkeyCluster.
func RequireValkeyCluster(t testing.TB) []string {
	t.Helper()
	if len(ValkeyClusterAddrs) == 0 {
		t.Fatal("VALKEY_CLUSTER_ADDRS lists no address")
	}
	for _, addr := range ValkeyClusterAddrs {
		if err := clusterStateOK(addr); err != nil {
			t.Fatalf("the dev Valkey Cluster is not usable (run `make services-up`): %v", err)
		}
	}
	return slices.Clone(ValkeyClusterAddrs)
}

// clusterStateOK returns nil if the node on addr says cluster_state:ok.
func clusterStateOK(addr string) error {
	info, err := respString(addr, "CLUSTER", "INFO")
	if err != nil {
		return fmt.Errorf("CLUSTER INFO on %s: %w", addr, err)
	}
	if !strings.Contains(info, "cluster_state:ok") {
		return fmt.Errorf("%s is not cluster_state:ok:\n%s", addr, info)
	}
	return nil
}

// replicaLinkUp returns nil if the node on addr is a primary or a replica whose link to its
// primary is up (master_link_status:up in INFO replication).
func replicaLinkUp(addr string) error {
	info, err := respString(addr, "INFO", "replication")
	if err != nil {
		return fmt.Errorf("INFO replication on %s: %w", addr, err)
	}
	if strings.Contains(info, "role:slave") && !strings.Contains(info, "master_link_status:up") {
		return fmt.Errorf("the replica %s has no working link to its primary yet", addr)
	}
	return nil
}

// ValkeyCluster is a private Valkey (or Redis) Cluster for one test: 3 primaries and 3
// replicas on free loopback ports (each node's cluster bus on its port + 10000), under
// t.TempDir(), with a node timeout of 1000 ms so that a replica takes over a dead primary
// within seconds, and nothing kept on disk but each node's nodes.conf. Tests that kill a
// primary or move slots use one, never the shared dev cluster. Every node is killed when the
// test ends.
type ValkeyCluster struct {
	bin, cli    string
	nodeTimeout time.Duration

	mu    sync.Mutex
	nodes []*clusterNode // in start order, killed ones included
}

// Node is one node of a ValkeyCluster.
type Node struct {
	Addr string // 127.0.0.1:PORT
	ID   string // the cluster node ID (CLUSTER MYID)
	PID  int    // the server process
}

// clusterNode is one server process of a ValkeyCluster.
type clusterNode struct {
	addr, dir string
	cmd       *exec.Cmd
	done      chan struct{} // closed when the process has exited
}

// alive reports whether the node's process runs.
func (n *clusterNode) alive() bool {
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

// StartValkeyCluster starts a private cluster, waits until it is healthy (see WaitHealthy)
// and returns it. Its node timeout is 1 s, so that a replica takes over a killed primary
// within seconds; tests that kill nothing use StartStableValkeyCluster.
func StartValkeyCluster(t testing.TB) *ValkeyCluster {
	t.Helper()
	return startValkeyCluster(t, time.Second)
}

// StartStableValkeyCluster is StartValkeyCluster with a node timeout of 30 s: on a machine
// loaded by a whole test run, a node that misses heartbeats for a second is not taken for
// dead, so no failover (which loses the writes a replica had not received yet) happens in
// the middle of a test that counts.
func StartStableValkeyCluster(t testing.TB) *ValkeyCluster {
	t.Helper()
	return startValkeyCluster(t, 30*time.Second)
}

func startValkeyCluster(t testing.TB, nodeTimeout time.Duration) *ValkeyCluster {
	t.Helper()
	c := &ValkeyCluster{bin: lookBin(t, "valkey-server", "redis-server"), cli: lookBin(t, "valkey-cli", "redis-cli"), nodeTimeout: nodeTimeout}
	// Cleanups run last first: the nodes are killed, and waited for, before their directory
	// is removed (a live node rewrites nodes.conf at any time, and the removal failed so).
	dir := t.TempDir()
	t.Cleanup(c.killAll)
	for _, port := range clusterPorts(t, 6, false) {
		c.nodes = append(c.nodes, c.startNode(t, dir, port))
	}
	args := append([]string{"--cluster", "create"}, c.Seeds()...)
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	if out, err := exec.Command(c.cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s --cluster create: %v\n%s", c.cli, err, out)
	}
	c.WaitHealthy(t, 20*time.Second)
	return c
}

// lookBin returns the path of the first of names found on PATH.
func lookBin(t testing.TB, names ...string) string {
	t.Helper()
	for _, name := range names {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatalf("none of %s is installed (run `make services-up`)", strings.Join(names, ", "))
	return ""
}

// startNode starts a cluster node on port, or, when another process takes the port first,
// on other free ports (three tries), and waits up to 10 s for it to answer PING.
func (c *ValkeyCluster) startNode(t testing.TB, dir string, port int) *clusterNode {
	t.Helper()
	for try := 0; ; try++ {
		n := &clusterNode{addr: "127.0.0.1:" + strconv.Itoa(port), dir: filepath.Join(dir, strconv.Itoa(port))}
		if err := os.MkdirAll(n.dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := c.run(t, n); err != nil {
			t.Fatal(err)
		}
		if err := waitPing(n, 10*time.Second); err == nil {
			return n
		} else if n.alive() || try == 2 {
			n.kill()
			t.Fatalf("%v (log: %s)", err, filepath.Join(n.dir, "node.log"))
		}
		port = clusterPorts(t, 1, false)[0]
	}
}

// run starts the node's server process.
func (c *ValkeyCluster) run(t testing.TB, n *clusterNode) error {
	_, port, _ := net.SplitHostPort(n.addr)
	cmd := exec.Command(c.bin, "--port", port, "--bind", "127.0.0.1", "--dir", n.dir,
		"--logfile", filepath.Join(n.dir, "node.log"), "--save", "", "--appendonly", "no",
		"--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(n.dir, "nodes.conf"),
		"--cluster-node-timeout", strconv.FormatInt(c.nodeTimeout.Milliseconds(), 10), "--cluster-require-full-coverage", "no",
		"--cluster-replica-validity-factor", "0")
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %v", c.bin, err)
	}
	c.mu.Lock()
	n.cmd, n.done = cmd, make(chan struct{})
	c.mu.Unlock()
	go func(done chan struct{}) {
		cmd.Wait()
		close(done)
	}(n.done)
	return nil
}

// waitPing waits until the node answers PING, failing early if its process exits.
func waitPing(n *clusterNode, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if !n.alive() {
			return fmt.Errorf("cluster node %s exited at start", n.addr)
		}
		if ping(n.addr) {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("cluster node %s did not answer PING within %s", n.addr, timeout)
}

// kill kills the node's process (SIGKILL) if it runs and waits for it to exit.
func (n *clusterNode) kill() {
	if n.cmd != nil && n.alive() {
		n.cmd.Process.Kill()
	}
	if n.done != nil {
		<-n.done
	}
}

func (c *ValkeyCluster) killAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.nodes {
		n.kill()
	}
}

// Seeds returns the addresses of the six nodes, as a client of the cluster is given them,
// the killed ones included.
func (c *ValkeyCluster) Seeds() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	addrs := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		addrs[i] = n.addr
	}
	return addrs
}

// live returns the nodes whose process runs, by address.
func (c *ValkeyCluster) live() map[string]*clusterNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := map[string]*clusterNode{}
	for _, n := range c.nodes {
		if n.alive() {
			m[n.addr] = n
		}
	}
	return m
}

// anyLive returns the address of a running node.
func (c *ValkeyCluster) anyLive(t testing.TB) string {
	t.Helper()
	for _, addr := range c.Seeds() {
		if _, ok := c.live()[addr]; ok {
			return addr
		}
	}
	t.Fatal("no node of the private Valkey Cluster runs")
	return ""
}

// Primaries returns the running primaries, in address order, as a running node sees them.
func (c *ValkeyCluster) Primaries(t testing.TB) []Node {
	t.Helper()
	addr := c.anyLive(t)
	entries, err := clusterNodes(addr)
	if err != nil {
		t.Fatal(err)
	}
	live := c.live()
	var primaries []Node
	for _, e := range entries {
		if n, ok := live[e.addr]; ok && e.primary() && !e.failed() {
			primaries = append(primaries, Node{Addr: e.addr, ID: e.id, PID: n.cmd.Process.Pid})
		}
	}
	slices.SortFunc(primaries, func(a, b Node) int { return strings.Compare(a.Addr, b.Addr) })
	return primaries
}

// KillPrimaryOf kills (SIGKILL) the primary that serves the slot of key (CLUSTER KEYSLOT),
// waits for its process to exit and returns it. Its replica takes over within seconds
// (WaitHealthy waits for that).
func (c *ValkeyCluster) KillPrimaryOf(t testing.TB, key string) Node {
	t.Helper()
	addr := c.anyLive(t)
	reply, err := respDo(addr, "CLUSTER", "KEYSLOT", key)
	if err != nil {
		t.Fatalf("CLUSTER KEYSLOT %s on %s: %v", key, addr, err)
	}
	slot, ok := reply.(int64)
	if !ok {
		t.Fatalf("CLUSTER KEYSLOT %s on %s: unexpected reply %v", key, addr, reply)
	}
	entries, err := clusterNodes(addr)
	if err != nil {
		t.Fatal(err)
	}
	live := c.live()
	for _, e := range entries {
		if !e.primary() || e.failed() || !e.serves(int(slot)) {
			continue
		}
		n, ok := live[e.addr]
		if !ok {
			t.Fatalf("the primary of slot %d (%s, key %q) is already dead", slot, e.addr, key)
		}
		node := Node{Addr: e.addr, ID: e.id, PID: n.cmd.Process.Pid}
		n.kill()
		return node
	}
	t.Fatalf("no primary serves slot %d (key %q) in the view of %s", slot, key, addr)
	return Node{}
}

// Restart starts a killed node again on its address, with its nodes.conf: it rejoins the
// cluster (as a replica of the node that took over its slots), empty. It waits for PING
// only; WaitHealthy waits for the cluster.
func (c *ValkeyCluster) Restart(t testing.TB, node Node) {
	t.Helper()
	c.mu.Lock()
	var n *clusterNode
	for _, m := range c.nodes {
		if m.addr == node.Addr {
			n = m
		}
	}
	c.mu.Unlock()
	if n == nil {
		t.Fatalf("%s is not a node of this cluster", node.Addr)
	}
	if n.alive() {
		t.Fatalf("cluster node %s is running", node.Addr)
	}
	if err := c.run(t, n); err != nil {
		t.Fatal(err)
	}
	if err := waitPing(n, 10*time.Second); err != nil {
		t.Fatalf("%v (log: %s)", err, filepath.Join(n.dir, "node.log"))
	}
}

// WaitHealthy waits until every running node says cluster_state:ok, every running replica's
// link to its primary is up (its initial sync done, so WAIT can count it) and, in every
// running node's view, each of the 16384 slots is served by a running primary; it fails the
// test after timeout.
func (c *ValkeyCluster) WaitHealthy(t testing.TB, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := c.healthy()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the private Valkey Cluster is not healthy after %s: %v", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// healthy returns why the cluster is not healthy, or nil.
func (c *ValkeyCluster) healthy() error {
	live := c.live()
	if len(live) == 0 {
		return errors.New("no node runs")
	}
	for addr := range live {
		if err := clusterStateOK(addr); err != nil {
			return err
		}
		if err := replicaLinkUp(addr); err != nil {
			return err
		}
		entries, err := clusterNodes(addr)
		if err != nil {
			return err
		}
		var served [16384]bool
		for _, e := range entries {
			if _, ok := live[e.addr]; !ok || !e.primary() || e.failed() {
				continue
			}
			for _, r := range e.slots {
				for s := r[0]; s <= r[1]; s++ {
					served[s] = true
				}
			}
		}
		if s := slices.Index(served[:], false); s >= 0 {
			return fmt.Errorf("in the view of %s, slot %d is not served by a running primary", addr, s)
		}
	}
	return nil
}

// Reshard moves slots slots from the primary from to the primary to with
// `redis-cli --cluster reshard` (valkey-cli where installed), keys included. Call WaitHealthy
// afterwards to let every node learn the new owners.
func (c *ValkeyCluster) Reshard(t testing.TB, from, to Node, slots int) {
	t.Helper()
	out, err := exec.Command(c.cli, "--cluster", "reshard", from.Addr, "--cluster-from", from.ID,
		"--cluster-to", to.ID, "--cluster-slots", strconv.Itoa(slots), "--cluster-yes").CombinedOutput()
	if err != nil || strings.Contains(string(out), "[ERR]") {
		t.Fatalf("%s --cluster reshard from %s to %s (%d slots): %v\n%s", c.cli, from.Addr, to.Addr, slots, err, out)
	}
}

// nodeEntry is one line of CLUSTER NODES.
type nodeEntry struct {
	id, addr string
	flags    []string
	master   string   // the primary's id, for a replica; "-" for a primary
	slots    [][2]int // inclusive ranges
}

func (e nodeEntry) primary() bool { return slices.Contains(e.flags, "master") }

// failed reports a node flagged fail or fail? (unreachable).
func (e nodeEntry) failed() bool {
	return slices.Contains(e.flags, "fail") || slices.Contains(e.flags, "fail?")
}

func (e nodeEntry) serves(slot int) bool {
	for _, r := range e.slots {
		if r[0] <= slot && slot <= r[1] {
			return true
		}
	}
	return false
}

// clusterNodes returns the nodes in the view of the node on addr (CLUSTER NODES).
func clusterNodes(addr string) ([]nodeEntry, error) {
	text, err := respString(addr, "CLUSTER", "NODES")
	if err != nil {
		return nil, fmt.Errorf("CLUSTER NODES on %s: %w", addr, err)
	}
	var entries []nodeEntry
	for line := range strings.Lines(text) {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		// ip:port@busport[,hostname]
		a, _, _ := strings.Cut(f[1], "@")
		e := nodeEntry{id: f[0], addr: a, flags: strings.Split(f[2], ","), master: f[3]}
		for _, s := range f[8:] {
			if strings.HasPrefix(s, "[") { // a slot being migrated or imported
				continue
			}
			lo, hi, isRange := strings.Cut(s, "-")
			if !isRange {
				hi = lo
			}
			l, err1 := strconv.Atoi(lo)
			h, err2 := strconv.Atoi(hi)
			if err1 != nil || err2 != nil || l < 0 || h >= 16384 || l > h {
				return nil, fmt.Errorf("CLUSTER NODES on %s: bad slot range %q", addr, s)
			}
			e.slots = append(e.slots, [2]int{l, h})
		}
		entries = append(entries, e)
	}
	return entries, nil
}

// clusterPorts returns n loopback ports p, each with p+10000 (the cluster bus port) free too,
// all at most 55535; with consecutive, they follow each other. They are picked at random
// below 22768, so that the bus ports stay under Linux's default ephemeral range (32768+).
func clusterPorts(t testing.TB, n int, consecutive bool) []int {
	t.Helper()
	const lo, hi = 10000, 22768
	var held []net.Listener
	defer func() {
		for _, ln := range held {
			ln.Close()
		}
	}()
	// hold locks port and its bus port for this process (freeport) and listens on both,
	// keeping the listeners until the function returns.
	hold := func(port int) bool {
		var got []net.Listener
		for _, p := range []int{port, port + 10000} {
			ok, err := freeport.Lock(p)
			if err != nil {
				t.Fatal(err)
			}
			var ln net.Listener
			if ok {
				ln, err = net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
			}
			if !ok || err != nil {
				for _, l := range got {
					l.Close()
				}
				return false
			}
			got = append(got, ln)
		}
		held = append(held, got...)
		return true
	}
	var ports []int
	for try := 0; try < 1000 && len(ports) < n; try++ {
		if !consecutive {
			if p := lo + rand.IntN(hi-lo); !slices.Contains(ports, p) && hold(p) {
				ports = append(ports, p)
			}
			continue
		}
		base := lo + rand.IntN(hi-lo-n)
		mark := len(held)
		for p := base; p < base+n && hold(p); p++ {
			ports = append(ports, p)
		}
		if len(ports) < n {
			for _, ln := range held[mark:] {
				ln.Close()
			}
			held, ports = held[:mark], nil
		}
	}
	if len(ports) < n {
		t.Fatalf("found no %d free loopback ports (with port+10000) between %d and %d", n, lo, hi)
	}
	return ports
}

// respString sends one command and returns its reply as a string (a simple or bulk string).
func respString(addr string, args ...string) (string, error) {
	reply, err := respDo(addr, args...)
	if err != nil {
		return "", err
	}
	s, ok := reply.(string)
	if !ok {
		return "", fmt.Errorf("%s: unexpected reply %v", strings.Join(args, " "), reply)
	}
	return s, nil
}

// respDo sends one command to the server on addr over a new connection and returns its
// reply: a string (simple or bulk), an int64, a []any, or nil. An error reply is an error.
func respDo(addr string, args ...string) (any, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, encodeCommand(args...)); err != nil {
		return nil, err
	}
	return readReply(bufio.NewReader(c))
}

// readReply reads one RESP2 reply.
func readReply(r *bufio.Reader) (any, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return nil, errors.New("empty RESP reply line")
	}
	switch body := line[1:]; line[0] {
	case '+':
		return body, nil
	case '-':
		return nil, errors.New(body)
	case ':':
		return strconv.ParseInt(body, 10, 64)
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil || n < 0 {
			return nil, err
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(body)
		if err != nil || n < 0 {
			return nil, err
		}
		items := make([]any, n)
		for i := range items {
			if items[i], err = readReply(r); err != nil {
				return nil, err
			}
		}
		return items, nil
	default:
		return nil, fmt.Errorf("unexpected RESP reply %q", line)
	}
}
