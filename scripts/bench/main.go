// Command bench is `make bench`: it measures Caddy configurations under identical load on
// loopback, side by side in alternating rounds, and writes a Markdown table, JSON and a PNG
// chart under .run/bench/.
//
//	go run ./scripts/bench            # every scenario, under 10 minutes
//	go run ./scripts/bench -quick     # the quick ones, about 2½ minutes once the builds are cached
//	go run ./scripts/bench -only 2,7  # some scenarios (and the baselines they refer to)
//
// Builds: stock Caddy at the version xcaddy.json pins and Caddy with pinned peer plugins, each
// made once with xcaddy's library from the Go module proxy and cached by version under
// .run/bench/build/; our bin/caddy through `make caddy`. Scenarios are Caddyfile templates
// (templates/) listed in Scenarios; README.md beside this file says how to add one.
//
// Method: wrk (installed from Debian when missing) from one thread and 32 connections against
// 127.0.0.1, every server running at once on its own free port; a warm-up per scenario, then
// rounds that visit the scenarios in the same order. Each figure is a median over rounds with
// its min–max: requests/s, p50 and p99 latency, and the server's CPU time per request (utime +
// stime from /proc/PID/stat over the round, divided by the requests wrk completed), also as
// ratios to scenarios 1, 2 and 2m of the same round.
//
// The upstream is this same program, started by it as `bench -upstream 127.0.0.1:PORT`. The
// app-server scenarios (9…) also run bin/appserver over a seeded database of the dev Postgres
// primary and replica, which scripts/services.sh starts or reuses (appserver.go).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) == 3 && os.Args[1] == "-upstream" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		if err := serveUpstream(ctx, os.Args[2]); err != nil {
			fmt.Fprintln(os.Stderr, "bench upstream:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// plan is how long a run loads each scenario.
type plan struct {
	Rounds   int           `json:"rounds"`
	Warmup   time.Duration `json:"warmup_ns"`
	Duration time.Duration `json:"duration_ns"`
	// Paced is how long each paced (open-loop) latency measurement lasts: in a full run
	// never shorter than 10 s, so that a p99 rests on at least 300 of 30,000 requests at 3,000
	// req/s and not on a few pauses.
	Paced time.Duration `json:"paced_ns"`
}

// makePlan sizes warm-ups and rounds so that the load of a whole run stays within budget
// however many scenarios there are: quick runs 2 rounds of at most 4 s in about 75 s of load,
// full runs 5 rounds of at most 10 s in about 6.5 minutes, plus the paced measurements.
// wrk takes whole seconds; a round is never shorter than 2 s.
func makePlan(n int, quick bool) plan {
	p := plan{Rounds: 5, Warmup: 3 * time.Second, Duration: 10 * time.Second}
	budget := 6*time.Minute + 30*time.Second
	if quick {
		p = plan{Rounds: 2, Warmup: time.Second, Duration: 4 * time.Second}
		budget = 75 * time.Second
	}
	if n > 0 {
		p.Warmup = max(time.Second, min(p.Warmup, budget/8/time.Duration(n)).Truncate(time.Second))
		load := budget - p.Warmup*time.Duration(n)
		p.Duration = max(2*time.Second, min(p.Duration, load/time.Duration(n*p.Rounds)).Truncate(time.Second))
	}
	p.Paced = p.Duration
	if !quick {
		p.Paced = max(p.Paced, 10*time.Second)
	}
	return p
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	quick := fs.Bool("quick", os.Getenv("QUICK") == "1", "quick run: fewer scenarios, rounds and seconds (also QUICK=1)")
	only := fs.String("only", "", "comma-separated scenario IDs to run (their baselines are added)")
	pin := fs.Bool("pin", os.Getenv("PIN") == "1", "pin wrk to the last CPU and the servers to the others with taskset (also PIN=1)")
	out := fs.String("out", ".run/bench", "output directory (results.md, results.json, results.png, build/, run/)")
	list := fs.Bool("list", false, "list the scenarios and exit")
	profile := fs.Bool("profile", os.Getenv("PROFILE") == "1", "after the rounds, take a CPU profile of each scenario's server under load into profile-ID.pprof (also PROFILE=1)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *list {
		for _, s := range Scenarios {
			fmt.Fprintf(stdout, "%-4s %-13s quick=%-5v vs %-3s %s\n", s.ID, s.Build, s.Quick, s.Baseline, s.Title)
		}
		return nil
	}
	selected, err := selectScenarios(Scenarios, *only, *quick)
	if err != nil {
		return err
	}
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	caddyVersion, err := manifestCaddyVersion(filepath.Join(root, "xcaddy.json"))
	if err != nil {
		return fmt.Errorf("run from the checkout's root: %w", err)
	}
	outDir, err := filepath.Abs(*out)
	if err != nil {
		return err
	}
	if err := ensureWrk(ctx, stderr); err != nil {
		return err
	}

	load := wrkLoad{Threads: 1, Connections: 32}
	var serverCPUs string
	if *pin {
		if n := runtime.NumCPU(); n >= 2 {
			load.CPU = fmt.Sprint(n - 1)
			serverCPUs = fmt.Sprintf("0-%d", n-2)
		} else {
			fmt.Fprintln(stderr, "bench: one CPU, not pinning")
		}
	}
	p := makePlan(len(selected), *quick)
	rep := newReport(caddyVersion, *quick, p, load)
	fmt.Fprintf(stderr, "bench: %d scenarios, warm-up %s, %d rounds of %s each; load average %s\n",
		len(selected), p.Warmup, p.Rounds, p.Duration, rep.Machine.LoadBefore)

	bl := builder{root: root, dir: filepath.Join(outDir, "build"), caddyVersion: caddyVersion, log: stderr}
	bins := map[string]string{}
	buildErr := map[string]error{}
	for _, s := range selected {
		if _, done := bins[s.Build]; done || buildErr[s.Build] != nil {
			continue
		}
		b, ok := buildByName(s.Build)
		if !ok {
			return fmt.Errorf("scenario %s names unknown build %q", s.ID, s.Build)
		}
		path, err := bl.binary(ctx, b)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			buildErr[s.Build] = err
			fmt.Fprintf(stderr, "bench: build %s failed, its scenarios are skipped: %v\n", s.Build, err)
			continue
		}
		bins[s.Build] = path
		rep.Builds[s.Build] = describeBuild(b, caddyVersion)
	}

	runDir := filepath.Join(outDir, "run")
	if err := os.RemoveAll(runDir); err != nil {
		return err
	}
	procs := &procSet{}
	defer procs.stopAll()

	upAddr, err := freeAddr()
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	up, err := procs.start(filepath.Join(runDir, "upstream"), serverCPUs, self, "-upstream", upAddr)
	if err != nil {
		return err
	}
	if err := up.waitStatus(ctx, "http://"+upAddr+"/data", 0, 30*time.Second); err != nil {
		return fmt.Errorf("upstream: %w", err)
	}

	base := TemplateData{Upstream: upAddr, Body: upstreamBody(),
		JWTSecret: benchJWTSecret, JWTIssuer: benchJWTIssuer, JWTAudience: benchJWTAudience}
	need := neededServices(selected, buildErr)
	needValkey, needApp := need.valkey, need.app
	var valkeyErr, clusterErr, appErr error
	var appBin string
	if needApp {
		// Before Valkey: on a fresh machine scripts/services.sh installs it.
		if appBin, appErr = bl.appServer(ctx); appErr == nil {
			rep.Builds["appserver"] = "bin/appserver from `make appserver`"
			appErr = servicesUp(ctx, root, stderr)
		}
	}
	if needValkey {
		if base.Valkey, valkeyErr = startValkey(ctx, procs, filepath.Join(runDir, "valkey"), serverCPUs); valkeyErr != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			fmt.Fprintf(stderr, "bench: Valkey did not start, the scenarios needing it are skipped: %v\n", valkeyErr)
		}
	}
	if need.cluster {
		var addrs []string
		if addrs, clusterErr = startValkeyCluster(ctx, procs, filepath.Join(runDir, "valkey-cluster"), serverCPUs); clusterErr != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			fmt.Fprintf(stderr, "bench: the Valkey Cluster did not start, the scenarios needing it are skipped: %v\n", clusterErr)
		}
		base.ValkeyCluster = strings.Join(addrs, " ")
	}
	var app appEnv
	if needApp && appErr == nil {
		if valkeyErr != nil {
			appErr = fmt.Errorf("needs Valkey: %w", valkeyErr)
		} else {
			app, appErr = startAppServer(ctx, procs, root, appBin, filepath.Join(runDir, "appserver"), serverCPUs, base.Valkey, stderr)
		}
	}
	if appErr != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		fmt.Fprintf(stderr, "bench: the app server did not start, the scenarios needing it are skipped: %v\n", appErr)
	} else if needApp {
		base.App, base.AppMetrics, base.Story = app.Addr, app.Metrics, strconv.FormatInt(app.Story, 10)
	}
	// One token for the whole run, valid well beyond its end.
	authHeader := "Authorization: Bearer " + benchToken(time.Now(), 2*time.Hour)
	var live []*liveScenario
	for _, s := range selected {
		res := rep.add(s)
		if err := buildErr[s.Build]; err != nil {
			res.Skipped = "build failed: " + firstLine(err.Error())
			continue
		}
		if s.needsValkey() && valkeyErr != nil {
			res.Skipped = "Valkey did not start: " + firstLine(valkeyErr.Error())
			continue
		}
		if s.needsValkeyCluster() && clusterErr != nil {
			res.Skipped = "the Valkey Cluster did not start: " + firstLine(clusterErr.Error())
			continue
		}
		if s.Needs == "appserver" && appErr != nil {
			res.Skipped = "the app server did not start: " + firstLine(appErr.Error())
			continue
		}
		var headers []string
		if s.Auth {
			headers = append(headers, authHeader)
		}
		ls, err := startScenario(ctx, procs, s, bins[s.Build], filepath.Join(runDir, s.ID), serverCPUs, base, headers)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			res.Skipped = firstLine(err.Error())
			fmt.Fprintf(stderr, "bench: scenario %s skipped: %v\n", s.ID, err)
			continue
		}
		ls.res = res
		if s.Needs == "appserver" && app.Note != "" {
			res.Notes = append(res.Notes, "9: "+app.Note)
			app.Note = "" // once, under the first app-server scenario
		}
		live = append(live, ls)
	}

	for _, ls := range live {
		fmt.Fprintf(stderr, "bench: warm-up %s (%s)\n", ls.s.ID, ls.s.Title)
		if _, err := load.run(ctx, ls.url, p.Warmup, ls.headers, ls.script); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			ls.res.Skipped = "warm-up failed: " + firstLine(err.Error())
			fmt.Fprintf(stderr, "bench: scenario %s skipped: %v\n", ls.s.ID, err)
		}
	}
	for r := 0; r < p.Rounds; r++ {
		for _, ls := range live {
			if ls.res.Skipped != "" {
				continue
			}
			rr, err := ls.measure(ctx, load, p.Duration)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err != nil {
				fmt.Fprintf(stderr, "bench: round %d, scenario %s: %v\n", r+1, ls.s.ID, err)
				rr = RoundResult{Error: firstLine(err.Error())}
			} else {
				fmt.Fprintf(stderr, "bench: round %d/%d %-3s %8.0f req/s  p99 %6.2f ms  %6.1f µs CPU/req\n",
					r+1, p.Rounds, ls.s.ID, rr.RPS, rr.P99ms, rr.CPUMicros)
			}
			ls.res.Rounds = append(ls.res.Rounds, rr)
		}
	}
	for _, ls := range live {
		if ls.s.Paced > 0 && ls.res.Skipped == "" {
			status := http.StatusOK
			if ls.s.Probe.Status != 0 {
				status = ls.s.Probe.Status
			}
			pr, err := pacedLoad(ctx, ls.url, ls.headers, ls.s.Paced, p.Paced, status)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			note := ls.s.ID + " paced: " + firstLine(fmt.Sprint(err))
			if err == nil {
				note = pr.note(ls.s.ID, p.Paced)
			}
			fmt.Fprintln(stderr, "bench: "+note)
			ls.res.Notes = append(ls.res.Notes, note)
		}
	}
	if *profile {
		for _, ls := range live {
			if ls.res.Skipped != "" {
				continue
			}
			file := filepath.Join(outDir, "profile-"+ls.s.ID+".pprof")
			if err := ls.profile(ctx, load, p.Duration, file); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				fmt.Fprintf(stderr, "bench: profile of %s: %v\n", ls.s.ID, err)
				continue
			}
			fmt.Fprintf(stderr, "bench: profile of %s under load: %s (go tool pprof -top %s)\n", ls.s.ID, file, file)
		}
	}
	for _, ls := range live {
		if ls.s.ValkeyCheck != nil && ls.res.Skipped == "" {
			ls.res.Notes = append(ls.res.Notes, valkeyNote(ls))
		}
		if ls.s.Needs == "appserver" && ls.res.Skipped == "" {
			var requests int64
			for _, rr := range ls.res.Rounds {
				requests += rr.Requests
			}
			ls.res.Notes = append(ls.res.Notes, appNote(ls.s.ID, ls.appTotal, requests, edgeL1Bytes(ctx, ls.admin)))
		}
	}
	procs.stopAll()
	rep.finish(p.Rounds)

	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return err
	}
	md := rep.markdown()
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	png, err := rep.chart()
	if err != nil {
		return err
	}
	for name, data := range map[string][]byte{"results.md": []byte(md), "results.json": append(js, '\n'), "results.png": png} {
		if err := os.WriteFile(filepath.Join(outDir, name), data, 0o644); err != nil {
			return err
		}
	}
	fmt.Fprint(stdout, md)
	fmt.Fprintf(stderr, "bench: wrote %s/results.{md,json,png}\n", *out)
	var skipped []string
	for _, res := range rep.Scenarios {
		if res.Skipped != "" {
			skipped = append(skipped, res.ID)
		}
	}
	if len(skipped) > 0 {
		return errors.New("scenarios not measured: " + strings.Join(skipped, ", ") + " (see the table's notes)")
	}
	return nil
}

// services are the services a run starts for its scenarios.
type services struct{ valkey, cluster, app bool }

// neededServices reports which services the selected scenarios whose build did not fail
// need: the bench's Valkey, its Valkey Cluster, the app server.
func neededServices(selected []Scenario, buildErr map[string]error) services {
	var n services
	for _, s := range selected {
		if buildErr[s.Build] == nil {
			n.valkey = n.valkey || s.needsValkey()
			n.cluster = n.cluster || s.needsValkeyCluster()
			n.app = n.app || s.Needs == "appserver"
		}
	}
	return n
}

// valkeyNote says whether a scenario's answers came through Valkey (its ValkeyCheck): the
// commands its Valkey (or the cluster's primaries) ran during the rounds against the
// requests wrk completed in them, and how much the Caddy metrics of fallbacks or misses
// grew in them.
func valkeyNote(ls *liveScenario) string {
	var requests int64
	for _, rr := range ls.res.Rounds {
		requests += rr.Requests
	}
	return formatValkeyNote(ls.s.ID, ls.s.ValkeyCheck, len(ls.valkeys), ls.valkeyCalls, requests, ls.valkeyMetrics)
}

// formatValkeyNote is valkeyNote's text: servers is how many Valkey servers were counted on
// (a cluster's primaries when more than one), metrics the growth of each of c.Metrics.
func formatValkeyNote(id string, c *ValkeyCheck, servers int, calls, requests int64, metrics []float64) string {
	where := "Valkey"
	if servers > 1 {
		where = fmt.Sprintf("the cluster's %d primaries", servers)
	}
	per := "–"
	if requests > 0 {
		per = fmt.Sprintf("%.2f", float64(calls)/float64(requests))
	}
	note := fmt.Sprintf("%s: during the rounds %s ran %s %s for %s requests wrk completed (%s per request)",
		id, where, fmtNum(float64(calls), 0), c.What, fmtNum(float64(requests), 0), per)
	for i, m := range c.Metrics {
		v := math.NaN()
		if i < len(metrics) {
			v = metrics[i]
		}
		note += fmt.Sprintf("; %s %s", m.Label, fmtNum(v, 0))
	}
	return note
}

// firstLine returns s up to its first newline.
func firstLine(s string) string {
	first, _, _ := strings.Cut(s, "\n")
	return first
}
