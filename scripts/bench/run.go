package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// bench is one run: what it was asked, what it started and what it measured, filled in step
// by step by run.
type bench struct {
	opts         options
	stderr       io.Writer
	root         string // the checkout
	outDir       string // opts.out, absolute
	runDir       string // outDir/run, where every process started keeps its files
	caddyVersion string
	selected     []Scenario
	load         wrkLoad
	serverCPUs   string // the CPUs the servers are pinned to, if any
	plan         plan
	rep          *Report
	bl           builder
	procs        *procSet

	bins     map[string]string // build name → binary
	buildErr map[string]error  // build name → why it failed
	// base is the template data every scenario starts from: the upstream and the services.
	base                          TemplateData
	valkeyErr, clusterErr, appErr error // why a needed service did not start
	app                           appEnv
	live                          []*liveScenario
}

// newBench checks what a run needs before any build (the checkout, wrk) and plans it.
func newBench(ctx context.Context, o options, stderr io.Writer) (*bench, error) {
	selected, err := selectScenarios(Scenarios, o.only, o.quick)
	if err != nil {
		return nil, err
	}
	root, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	caddyVersion, err := manifestCaddyVersion(filepath.Join(root, "xcaddy.json"))
	if err != nil {
		return nil, fmt.Errorf("run from the checkout's root: %w", err)
	}
	outDir, err := filepath.Abs(o.out)
	if err != nil {
		return nil, err
	}
	if err := ensureWrk(ctx, stderr); err != nil {
		return nil, err
	}
	b := &bench{opts: o, stderr: stderr, root: root, outDir: outDir, runDir: filepath.Join(outDir, "run"),
		caddyVersion: caddyVersion, selected: selected, procs: &procSet{},
		bins: map[string]string{}, buildErr: map[string]error{}}
	b.load, b.serverCPUs = placeCPUs(o.pin, stderr)
	b.plan = makePlan(len(selected), o.quick)
	b.rep = newReport(caddyVersion, o.quick, b.plan, b.load)
	b.bl = builder{root: root, dir: filepath.Join(outDir, "build"), caddyVersion: caddyVersion, log: stderr}
	fmt.Fprintf(stderr, "bench: %d scenarios, warm-up %s, %d rounds of %s each; load average %s\n",
		len(selected), b.plan.Warmup, b.plan.Rounds, b.plan.Duration, b.rep.Machine.LoadBefore)
	return b, nil
}

// placeCPUs returns wrk's load and the CPUs of the servers: with pin, wrk on the last CPU
// and the servers on the others; unpinned on a single CPU.
func placeCPUs(pin bool, stderr io.Writer) (load wrkLoad, serverCPUs string) {
	load = wrkLoad{Threads: 1, Connections: 32}
	if !pin {
		return load, ""
	}
	n := runtime.NumCPU()
	if n < 2 {
		fmt.Fprintln(stderr, "bench: one CPU, not pinning")
		return load, ""
	}
	load.CPU = fmt.Sprint(n - 1)
	return load, fmt.Sprintf("0-%d", n-2)
}

// build makes the binary of each selected scenario's build once; a build that fails is
// reported and its scenarios are skipped later.
func (b *bench) build(ctx context.Context) error {
	for _, s := range b.selected {
		if _, done := b.bins[s.Build]; done || b.buildErr[s.Build] != nil {
			continue
		}
		bd, ok := buildByName(s.Build)
		if !ok {
			return fmt.Errorf("scenario %s names unknown build %q", s.ID, s.Build)
		}
		path, err := b.bl.binary(ctx, bd)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			b.buildErr[s.Build] = err
			fmt.Fprintf(b.stderr, "bench: build %s failed, its scenarios are skipped: %v\n", s.Build, err)
			continue
		}
		b.bins[s.Build] = path
		b.rep.Builds[s.Build] = describeBuild(bd, b.caddyVersion)
	}
	return nil
}

// startUpstream empties the run directory and starts the upstream (this program with
// -upstream), the base of every scenario's template data.
func (b *bench) startUpstream(ctx context.Context) error {
	if err := os.RemoveAll(b.runDir); err != nil {
		return err
	}
	upAddr, err := freeAddr()
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	up, err := b.procs.start(filepath.Join(b.runDir, "upstream"), b.serverCPUs, self, "-upstream", upAddr)
	if err != nil {
		return err
	}
	if err := up.waitStatus(ctx, "http://"+upAddr+"/data", 0, 30*time.Second); err != nil {
		return fmt.Errorf("upstream: %w", err)
	}
	b.base = TemplateData{Upstream: upAddr, Body: upstreamBody(),
		JWTSecret: benchJWTSecret, JWTIssuer: benchJWTIssuer, JWTAudience: benchJWTAudience}
	return nil
}

// startServices starts the services the scenarios whose build did not fail need: the
// bench's Valkey, its Valkey Cluster and the app server (with the dev Postgres). A service
// that does not start is reported and the scenarios needing it are skipped later.
func (b *bench) startServices(ctx context.Context) error {
	need := neededServices(b.selected, b.buildErr)
	var appBin string
	if need.app {
		// Before Valkey: on a fresh machine scripts/services.sh installs it.
		if appBin, b.appErr = b.bl.appServer(ctx); b.appErr == nil {
			b.rep.Builds["appserver"] = "bin/appserver from `make appserver`"
			b.appErr = servicesUp(ctx, b.root, b.stderr)
		}
	}
	if need.valkey {
		b.base.Valkey, b.valkeyErr = startValkey(ctx, b.procs, filepath.Join(b.runDir, "valkey"), b.serverCPUs)
		if err := b.notStarted(ctx, "Valkey", b.valkeyErr); err != nil {
			return err
		}
	}
	if need.cluster {
		var addrs []string
		addrs, b.clusterErr = startValkeyCluster(ctx, b.procs, filepath.Join(b.runDir, "valkey-cluster"), b.serverCPUs)
		if err := b.notStarted(ctx, "the Valkey Cluster", b.clusterErr); err != nil {
			return err
		}
		b.base.ValkeyCluster = strings.Join(addrs, " ")
	}
	if need.app && b.appErr == nil {
		if b.valkeyErr != nil {
			b.appErr = fmt.Errorf("needs Valkey: %w", b.valkeyErr)
		} else {
			b.app, b.appErr = startAppServer(ctx, b.procs, b.root, appBin, filepath.Join(b.runDir, "appserver"), b.serverCPUs, b.base.Valkey, b.stderr)
		}
	}
	if err := b.notStarted(ctx, "the app server", b.appErr); err != nil {
		return err
	}
	if need.app && b.appErr == nil {
		b.base.App, b.base.AppMetrics, b.base.Story = b.app.Addr, b.app.Metrics, strconv.FormatInt(b.app.Story, 10)
	}
	return nil
}

// notStarted reports that the service named failed to start with err, if it did: the
// scenarios needing it are skipped, unless the run was interrupted, which it returns.
func (b *bench) notStarted(ctx context.Context, service string, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	fmt.Fprintf(b.stderr, "bench: %s did not start, the scenarios needing it are skipped: %v\n", service, err)
	return nil
}

// startScenarios adds every selected scenario to the report and starts the server of each
// one whose build and services are up, in order; a scenario that does not start is skipped.
func (b *bench) startScenarios(ctx context.Context) error {
	// One token for the whole run, valid well beyond its end.
	authHeader := "Authorization: Bearer " + benchToken(time.Now(), 2*time.Hour)
	for _, s := range b.selected {
		res := b.rep.add(s)
		if res.Skipped = b.unmet(s); res.Skipped != "" {
			continue
		}
		var headers []string
		if s.Auth {
			headers = append(headers, authHeader)
		}
		ls, err := startScenario(ctx, b.procs, s, b.bins[s.Build], filepath.Join(b.runDir, s.ID), b.serverCPUs, b.base, headers)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			res.Skipped = firstLine(err.Error())
			fmt.Fprintf(b.stderr, "bench: scenario %s skipped: %v\n", s.ID, err)
			continue
		}
		ls.res = res
		if s.Needs == "appserver" && b.app.Note != "" {
			res.Notes = append(res.Notes, "9: "+b.app.Note)
			b.app.Note = "" // once, under the first app-server scenario
		}
		b.live = append(b.live, ls)
	}
	return nil
}

// unmet says why s cannot run, its build or a service it needs having failed; "" if it can.
func (b *bench) unmet(s Scenario) string {
	switch {
	case b.buildErr[s.Build] != nil:
		return "build failed: " + firstLine(b.buildErr[s.Build].Error())
	case s.needsValkey() && b.valkeyErr != nil:
		return "Valkey did not start: " + firstLine(b.valkeyErr.Error())
	case s.needsValkeyCluster() && b.clusterErr != nil:
		return "the Valkey Cluster did not start: " + firstLine(b.clusterErr.Error())
	case s.Needs == "appserver" && b.appErr != nil:
		return "the app server did not start: " + firstLine(b.appErr.Error())
	}
	return ""
}

// warmUp loads each live scenario for the plan's warm-up; one whose warm-up fails is skipped.
func (b *bench) warmUp(ctx context.Context) error {
	for _, ls := range b.live {
		fmt.Fprintf(b.stderr, "bench: warm-up %s (%s)\n", ls.s.ID, ls.s.Title)
		if _, err := b.load.run(ctx, ls.url, b.plan.Warmup, ls.headers, ls.script); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			ls.res.Skipped = "warm-up failed: " + firstLine(err.Error())
			fmt.Fprintf(b.stderr, "bench: scenario %s skipped: %v\n", ls.s.ID, err)
		}
	}
	return nil
}

// measureRounds runs the plan's rounds, each visiting the scenarios not skipped in order; a
// failed measurement is kept as the round's error.
func (b *bench) measureRounds(ctx context.Context) error {
	for r := 0; r < b.plan.Rounds; r++ {
		for _, ls := range b.live {
			if ls.res.Skipped != "" {
				continue
			}
			rr, err := ls.measure(ctx, b.load, b.plan.Duration)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err != nil {
				fmt.Fprintf(b.stderr, "bench: round %d, scenario %s: %v\n", r+1, ls.s.ID, err)
				rr = RoundResult{Error: firstLine(err.Error())}
			} else {
				fmt.Fprintf(b.stderr, "bench: round %d/%d %-3s %8.0f req/s  p99 %6.2f ms  %6.1f µs CPU/req\n",
					r+1, b.plan.Rounds, ls.s.ID, rr.RPS, rr.P99ms, rr.CPUMicros)
			}
			ls.res.Rounds = append(ls.res.Rounds, rr)
		}
	}
	return nil
}

// measurePaced notes the latency of each scenario with a Paced rate under that open-loop
// load, or why it could not be measured.
func (b *bench) measurePaced(ctx context.Context) error {
	for _, ls := range b.live {
		if ls.s.Paced <= 0 || ls.res.Skipped != "" {
			continue
		}
		status := http.StatusOK
		if ls.s.Probe.Status != 0 {
			status = ls.s.Probe.Status
		}
		pr, err := pacedLoad(ctx, ls.url, ls.headers, ls.s.Paced, b.plan.Paced, status)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		note := ls.s.ID + " paced: " + firstLine(fmt.Sprint(err))
		if err == nil {
			note = pr.note(ls.s.ID, b.plan.Paced)
		}
		fmt.Fprintln(b.stderr, "bench: "+note)
		ls.res.Notes = append(ls.res.Notes, note)
	}
	return nil
}

// profile takes, with -profile, a CPU profile of each scenario's server under load into
// profile-ID.pprof; a profile that fails is reported.
func (b *bench) profile(ctx context.Context) error {
	if !b.opts.profile {
		return nil
	}
	for _, ls := range b.live {
		if ls.res.Skipped != "" {
			continue
		}
		file := filepath.Join(b.outDir, "profile-"+ls.s.ID+".pprof")
		if err := ls.profile(ctx, b.load, b.plan.Duration, file); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			fmt.Fprintf(b.stderr, "bench: profile of %s: %v\n", ls.s.ID, err)
			continue
		}
		fmt.Fprintf(b.stderr, "bench: profile of %s under load: %s (go tool pprof -top %s)\n", ls.s.ID, file, file)
	}
	return nil
}

// addNotes notes, while the servers still run, what went through Valkey and the app server.
func (b *bench) addNotes(ctx context.Context) {
	for _, ls := range b.live {
		if ls.res.Skipped != "" {
			continue
		}
		if ls.s.ValkeyCheck != nil {
			ls.res.Notes = append(ls.res.Notes, valkeyNote(ls))
		}
		if ls.s.Needs == "appserver" {
			ls.res.Notes = append(ls.res.Notes, appNote(ls.s.ID, ls.appTotal, ls.requests(), edgeL1Bytes(ctx, ls.admin)))
		}
	}
}

// writeResults writes results.md, results.json and results.svg into the output directory
// and the Markdown table to stdout.
func (b *bench) writeResults(stdout io.Writer) error {
	if err := os.MkdirAll(b.outDir, 0o755); err != nil {
		return err
	}
	md := b.rep.markdown()
	js, err := json.MarshalIndent(b.rep, "", "  ")
	if err != nil {
		return err
	}
	for name, data := range map[string][]byte{"results.md": []byte(md), "results.json": append(js, '\n'), "results.svg": b.rep.chart()} {
		if err := os.WriteFile(filepath.Join(b.outDir, name), data, 0o644); err != nil {
			return err
		}
	}
	fmt.Fprint(stdout, md)
	fmt.Fprintf(b.stderr, "bench: wrote %s/results.{md,json,svg}\n", b.opts.out)
	return nil
}

// notMeasured is the run's error when scenarios were skipped: it lists them.
func (b *bench) notMeasured() error {
	var skipped []string
	for _, res := range b.rep.Scenarios {
		if res.Skipped != "" {
			skipped = append(skipped, res.ID)
		}
	}
	if len(skipped) > 0 {
		return errors.New("scenarios not measured: " + strings.Join(skipped, ", ") + " (see the table's notes)")
	}
	return nil
}
