package ratelimit

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/muejam/edge/internal/promtext"
	"github.com/muejam/edge/internal/testenv"
)

// startCaddy runs bin/caddy (from `make caddy`) with a JSON config: one server on addr
// whose only route is edge_rate_limit (a global zone over Valkey) and a 204, and its admin
// endpoint (metrics) on a free port, which it returns. The process is stopped when the test
// ends.
func startCaddy(t *testing.T, addr, zone string, events int, window time.Duration) (admin string) {
	t.Helper()
	admin = testenv.FreeAddr(t)
	bin := filepath.Join(testenv.RepoRoot(t), "bin", "caddy")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s is missing: build it with `make caddy`", bin)
	}
	cfg, err := json.Marshal(map[string]any{
		"admin":   map[string]any{"listen": admin, "config": map[string]any{"persist": false}},
		"logging": map[string]any{"logs": map[string]any{"default": map[string]any{"level": "ERROR"}}},
		"apps": map[string]any{"http": map[string]any{"servers": map[string]any{"limit": map[string]any{
			"listen": []string{addr},
			"routes": []any{map[string]any{"handle": []any{
				map[string]any{"handler": "edge_rate_limit", "valkey": testenv.ValkeyAddr, "valkey_timeout": "1s", "fallback_share": 2,
					"zones": []any{map[string]any{"name": zone, "key": "all", "events": events, "window": window.String()}}},
				map[string]any{"handler": "static_response", "status_code": 204},
			}}},
		}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "caddy.json")
	if err := os.WriteFile(path, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "--config", path)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	waitFor(t, 10*time.Second, "bin/caddy on "+addr, func() bool {
		resp, err := http.Get("http://" + addr + "/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return true
	})
	return admin
}

// TestTwoCaddyProcessesShareValkey: two bin/caddy processes with the same global zone over
// one Valkey, both under load for 3 s: never more than N admitted in any window-long span.
// fallback_share is 2, as production sets it to the number of nodes: on a machine loaded
// enough to make a Valkey call miss its timeout, the local fallback keeps the sum in bounds.
func TestTwoCaddyProcessesShareValkey(t *testing.T) {
	const n, win = 40, time.Second
	zone := uniqueZone("procs")
	addrs := []string{testenv.FreeAddr(t), testenv.FreeAddr(t)}
	var admins []string
	for _, a := range addrs {
		admins = append(admins, startCaddy(t, a, zone, n, win))
	}
	// The readiness probes were admitted too: they only lower what the load gets.
	var (
		mu  sync.Mutex
		adm []admission
		bad []int
		wg  sync.WaitGroup
	)
	stop := time.Now().Add(3 * time.Second)
	for _, a := range addrs {
		for range 3 {
			wg.Go(func() {
				c := &http.Client{Timeout: 5 * time.Second}
				for time.Now().Before(stop) {
					start := time.Now()
					resp, err := c.Get("http://" + a + "/")
					end := time.Now()
					mu.Lock()
					switch {
					case err != nil:
						bad = append(bad, 0)
					case resp.StatusCode == http.StatusNoContent:
						adm = append(adm, admission{start, end})
					case resp.StatusCode != http.StatusTooManyRequests:
						bad = append(bad, resp.StatusCode)
					}
					mu.Unlock()
					if err == nil {
						resp.Body.Close()
					}
				}
			})
		}
	}
	wg.Wait()
	if len(bad) > 0 {
		t.Fatalf("errors or statuses other than 204/429: %v", bad[:min(10, len(bad))])
	}
	most := maxInWindow(adm, win)
	fallbacks := 0.0
	for _, a := range admins {
		fallbacks += fallbacksOf(t, a, zone)
	}
	t.Logf("two processes, 3 s: %d admitted, at most %d in one window (limit %d); %v decisions on local windows", len(adm), most, n, fallbacks)
	// The shared limit is exact while every decision is Valkey's. A decision taken on local
	// windows (a Valkey call past its 1 s timeout on a starved machine) may admit up to
	// events ÷ fallback_share on its node regardless of the other's admissions.
	if limit := n + int(fallbacks); most > limit {
		t.Errorf("%d admitted within one window across two processes, limit %d (%v local decisions)", most, n, fallbacks)
	}
	if len(adm) < 2*n {
		t.Errorf("only %d admitted in 3 s of windows of %d", len(adm), n)
	}
}

// fallbacksOf reads a process's muejam_edge_rate_limit_fallbacks_total of zone from its
// admin endpoint's /metrics (0 when the zone never fell back).
func fallbacksOf(t *testing.T, admin, zone string) float64 {
	t.Helper()
	text, err := promtext.Fetch(context.Background(), admin)
	if err != nil {
		t.Fatal(err)
	}
	return promtext.Sum(text, "muejam_edge_rate_limit_fallbacks_total", `zone="`+zone+`"`)
}
