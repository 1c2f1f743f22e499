// Command bench is `make bench`: it measures Caddy configurations under identical load on
// loopback, side by side in alternating rounds, and writes a Markdown table, JSON and an SVG
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
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
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

// options are bench's flags.
type options struct {
	quick, pin, list, profile bool
	only, out                 string
}

// parseFlags parses bench's command line; usage and errors go to stderr.
func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&o.quick, "quick", os.Getenv("QUICK") == "1", "quick run: fewer scenarios, rounds and seconds (also QUICK=1)")
	fs.StringVar(&o.only, "only", "", "comma-separated scenario IDs to run (their baselines are added)")
	fs.BoolVar(&o.pin, "pin", os.Getenv("PIN") == "1", "pin wrk to the last CPU and the servers to the others with taskset (also PIN=1)")
	fs.StringVar(&o.out, "out", ".run/bench", "output directory (results.md, results.json, results.svg, build/, run/)")
	fs.BoolVar(&o.list, "list", false, "list the scenarios and exit")
	fs.BoolVar(&o.profile, "profile", os.Getenv("PROFILE") == "1", "after the rounds, take a CPU profile of each scenario's server under load into profile-ID.pprof (also PROFILE=1)")
	err := fs.Parse(args)
	return o, err
}

// run is the bench command: it builds, starts the upstream, the services and the
// scenarios' servers, warms them up, measures them round by round, stops them all however
// it ends, and writes the results (run.go).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if o.list {
		for _, s := range Scenarios {
			fmt.Fprintf(stdout, "%-4s %-13s quick=%-5v vs %-3s %s\n", s.ID, s.Build, s.Quick, s.Baseline, s.Title)
		}
		return nil
	}
	b, err := newBench(ctx, o, stderr)
	if err != nil {
		return err
	}
	if err := b.build(ctx); err != nil {
		return err
	}
	defer b.procs.stopAll()
	for _, step := range []func(context.Context) error{
		b.startUpstream, b.startServices, b.startScenarios,
		b.warmUp, b.measureRounds, b.measurePaced, b.profile,
	} {
		if err := step(ctx); err != nil {
			return err
		}
	}
	b.addNotes(ctx)
	b.procs.stopAll()
	b.rep.finish(b.plan.Rounds)
	if err := b.writeResults(stdout); err != nil {
		return err
	}
	return b.notMeasured()
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
	return formatValkeyNote(ls.s.ID, ls.s.ValkeyCheck, len(ls.valkeys), ls.valkeyCalls, ls.requests(), ls.valkeyMetrics)
}

// requests is how many requests wrk completed in the scenario's rounds.
func (ls *liveScenario) requests() int64 {
	var n int64
	for _, rr := range ls.res.Rounds {
		n += rr.Requests
	}
	return n
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
