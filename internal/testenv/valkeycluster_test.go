package testenv

import (
	"bufio"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestRequireValkeyClusterSeesTheDevCluster(t *testing.T) {
	seeds := RequireValkeyCluster(t)
	entries, err := clusterNodes(seeds[0])
	if err != nil {
		t.Fatal(err)
	}
	var primaries, replicas int
	for _, e := range entries {
		switch {
		case e.failed():
		case e.primary():
			primaries++
		default:
			replicas++
		}
	}
	if primaries < 3 || replicas < 3 {
		t.Fatalf("the dev cluster has %d primaries and %d replicas; want 3 and 3", primaries, replicas)
	}
}

func TestValkeyClusterFailoverAndReshard(t *testing.T) {
	c := StartValkeyCluster(t)
	if seeds := c.Seeds(); len(seeds) != 6 || slices.Contains(seeds, ValkeyClusterAddrs[0]) {
		t.Fatalf("Seeds() = %v; want six private nodes", seeds)
	}
	before := c.Primaries(t)
	if len(before) != 3 {
		t.Fatalf("Primaries() = %v; want 3", before)
	}

	// A write that every replica of its primary holds survives the primary's death,
	// whichever replica takes over (a primary may have two after an earlier failover on a
	// loaded machine). WAIT alone is not proof: a replica that has just finished its initial
	// sync was seen to be counted without the write, so each replica is read (READONLY).
	const key = "muejam:testenv:failover"
	owner := ownerOf(t, c, key)
	if _, err := respDo(owner, "SET", key, "kept"); err != nil {
		t.Fatal(err)
	}
	entries, err := clusterNodes(owner)
	if err != nil {
		t.Fatal(err)
	}
	var ownerID string
	for _, e := range entries {
		if e.addr == owner {
			ownerID = e.id
		}
	}
	var replicas []string
	for _, e := range entries {
		if !e.primary() && !e.failed() && e.master == ownerID {
			replicas = append(replicas, e.addr)
		}
	}
	if len(replicas) == 0 {
		t.Fatalf("%s has no replica: %+v", owner, entries)
	}
	for _, r := range replicas {
		deadline := time.Now().Add(10 * time.Second)
		for {
			v, err := readOnlyGet(r, key)
			if err == nil && v == "kept" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the replica %s of %s does not hold %s after 10s: %v, %v", r, owner, key, v, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	start := time.Now()
	killed := c.KillPrimaryOf(t, key)
	if killed.Addr != owner {
		t.Fatalf("KillPrimaryOf(%q) killed %s; the key lives on %s", key, killed.Addr, owner)
	}
	c.WaitHealthy(t, 10*time.Second)
	t.Logf("a replica took over from %s in %s", killed.Addr, time.Since(start).Round(time.Millisecond))

	after := c.Primaries(t)
	if len(after) != 3 || slices.ContainsFunc(after, func(n Node) bool { return n.Addr == killed.Addr }) {
		t.Fatalf("primaries after the failover: %v; want 3 without %s", after, killed.Addr)
	}
	promoted := ownerOf(t, c, key)
	if slices.ContainsFunc(before, func(n Node) bool { return n.Addr == promoted }) {
		t.Fatalf("the key's slot moved to %s, a primary before the failover; want a promoted replica", promoted)
	}
	if v, err := respDo(promoted, "GET", key); err != nil || v != "kept" {
		t.Fatalf("GET %s on the promoted %s = %v, %v; want kept", key, promoted, v, err)
	}

	// The killed node comes back as a replica.
	c.Restart(t, killed)
	c.WaitHealthy(t, 10*time.Second)
	if p := c.Primaries(t); slices.ContainsFunc(p, func(n Node) bool { return n.Addr == killed.Addr }) {
		t.Fatalf("the restarted %s is a primary again: %v", killed.Addr, p)
	}

	// Reshard moves slots, keys included.
	from, to := after[0], after[1]
	slotsBefore := slotCount(t, c, to.Addr)
	c.Reshard(t, from, to, 100)
	c.WaitHealthy(t, 10*time.Second)
	if got := slotCount(t, c, to.Addr); got != slotsBefore+100 {
		t.Fatalf("%s serves %d slots after the reshard; want %d", to.Addr, got, slotsBefore+100)
	}
	if v, err := respDo(ownerOf(t, c, key), "GET", key); err != nil || v != "kept" {
		t.Fatalf("GET %s after the reshard = %v, %v; want kept", key, v, err)
	}
}

// readOnlyGet reads key on the replica at addr (READONLY, then GET, on one connection).
func readOnlyGet(addr, key string) (any, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, encodeCommand("READONLY")+encodeCommand("GET", key)); err != nil {
		return nil, err
	}
	r := bufio.NewReader(c)
	if _, err := readReply(r); err != nil {
		return nil, err
	}
	return readReply(r)
}

// ownerOf returns the running primary that serves key: the one that does not answer MOVED.
func ownerOf(t *testing.T, c *ValkeyCluster, key string) string {
	t.Helper()
	for _, p := range c.Primaries(t) {
		_, err := respDo(p.Addr, "EXISTS", key)
		if err == nil {
			return p.Addr
		}
		if !strings.HasPrefix(err.Error(), "MOVED ") {
			t.Fatalf("EXISTS %s on %s: %v", key, p.Addr, err)
		}
	}
	t.Fatalf("no running primary serves %s", key)
	return ""
}

// slotCount returns how many slots the node on addr serves, in its own view.
func slotCount(t *testing.T, c *ValkeyCluster, addr string) int {
	t.Helper()
	entries, err := clusterNodes(addr)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if e.addr == addr {
			for _, r := range e.slots {
				n += r[1] - r[0] + 1
			}
		}
	}
	return n
}
