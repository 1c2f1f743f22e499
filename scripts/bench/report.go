package main

import (
	"bufio"
	"fmt"
	"maps"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Report is everything one run measured; it is written as results.json.
type Report struct {
	Date         string            `json:"date"`
	Machine      Machine           `json:"machine"`
	GoVersion    string            `json:"go_version"`
	CaddyVersion string            `json:"caddy_version"`
	Quick        bool              `json:"quick"`
	Plan         plan              `json:"plan"`
	Load         wrkLoad           `json:"wrk"`
	Builds       map[string]string `json:"builds"`
	Scenarios    []*ScenarioResult `json:"scenarios"`
}

// Machine describes where the run happened, including how busy the machine was.
type Machine struct {
	CPU        string `json:"cpu"`
	CPUs       int    `json:"cpus"`
	Kernel     string `json:"kernel"`
	LoadBefore string `json:"loadavg_before"`
	LoadAfter  string `json:"loadavg_after"`
}

// ScenarioResult is one scenario's rounds and their summaries.
type ScenarioResult struct {
	ID       string   `json:"id"`
	Title    string   `json:"title"`
	Build    string   `json:"build"`
	Baseline string   `json:"baseline,omitempty"`
	Compare  []string `json:"compare,omitempty"`
	// ExpectStatus is the status the scenario's path answers (its probe's), when not 2xx:
	// non-2xx responses are then the intended path, not a misconfiguration.
	ExpectStatus int           `json:"expect_status,omitempty"`
	Skipped      string        `json:"skipped,omitempty"`
	Notes        []string      `json:"notes,omitempty"`
	Rounds       []RoundResult `json:"rounds,omitempty"`
	// RPS, P50ms, P99ms and CPUMicros summarize the rounds.
	RPS       Summary `json:"rps"`
	P50ms     Summary `json:"p50_ms"`
	P99ms     Summary `json:"p99_ms"`
	CPUMicros Summary `json:"cpu_us_per_request"`
	// Ratios holds, for each stock baseline (1, 2, 2m) and the scenario's own Baseline
	// measured in the same run, this scenario's figures divided by the baseline's of the same
	// round.
	Ratios       map[string]Ratios `json:"ratios,omitempty"`
	Non2xx       int64             `json:"non_2xx_3xx,omitempty"`
	SocketErrors int64             `json:"socket_errors,omitempty"`
}

// Ratios are a scenario's figures over a baseline's, round by round, summarized.
type Ratios struct {
	RPS       Summary `json:"rps"`
	P50ms     Summary `json:"p50_ms"`
	P99ms     Summary `json:"p99_ms"`
	CPUMicros Summary `json:"cpu_us_per_request"`
}

// stockBaselines are the scenarios every other one is compared with, besides its own Baseline.
var stockBaselines = []string{"1", "2", "2m"}

func newReport(caddyVersion string, quick bool, p plan, load wrkLoad) *Report {
	return &Report{
		Date:         time.Now().UTC().Format("2006-01-02 15:04 UTC"),
		Machine:      Machine{CPU: cpuModel(), CPUs: runtime.NumCPU(), Kernel: readTrim("/proc/sys/kernel/osrelease"), LoadBefore: loadAvg()},
		GoVersion:    runtime.Version(),
		CaddyVersion: caddyVersion,
		Quick:        quick,
		Plan:         p,
		Load:         load,
		Builds:       map[string]string{},
	}
}

// add appends an empty result for s and returns it.
func (r *Report) add(s Scenario) *ScenarioResult {
	res := &ScenarioResult{ID: s.ID, Title: s.Title, Build: s.Build, Baseline: s.Baseline, Compare: s.Compare}
	if s.Probe.Status >= 300 {
		res.ExpectStatus = s.Probe.Status
	}
	r.Scenarios = append(r.Scenarios, res)
	return res
}

// series returns one figure of every round, NaN where a round has none.
func (res *ScenarioResult) series(rounds int, f func(RoundResult) float64) []float64 {
	out := make([]float64, rounds)
	for i := range out {
		out[i] = math.NaN()
		if i < len(res.Rounds) && res.Rounds[i].Error == "" {
			out[i] = f(res.Rounds[i])
		}
	}
	return out
}

var figures = []func(RoundResult) float64{
	func(r RoundResult) float64 { return r.RPS },
	func(r RoundResult) float64 { return r.P50ms },
	func(r RoundResult) float64 { return r.P99ms },
	func(r RoundResult) float64 { return r.CPUMicros },
}

// finish computes the summaries and the ratios to the baselines.
func (r *Report) finish(rounds int) {
	r.Machine.LoadAfter = loadAvg()
	byID := map[string]*ScenarioResult{}
	for _, res := range r.Scenarios {
		byID[res.ID] = res
		res.Non2xx, res.SocketErrors = 0, 0
		for _, rr := range res.Rounds {
			res.Non2xx += rr.Non2xx
			res.SocketErrors += rr.SocketErrors
		}
		s := make([]Summary, len(figures))
		for i, f := range figures {
			s[i] = summarize(res.series(rounds, f))
		}
		res.RPS, res.P50ms, res.P99ms, res.CPUMicros = s[0], s[1], s[2], s[3]
	}
	for _, res := range r.Scenarios {
		for _, id := range append(append(slices.Clone(stockBaselines), res.Baseline), res.Compare...) {
			base, ok := byID[id]
			if !ok || base == res || len(base.Rounds) == 0 || len(res.Rounds) == 0 {
				continue
			}
			s := make([]Summary, len(figures))
			for i, f := range figures {
				s[i] = summarize(ratios(res.series(rounds, f), base.series(rounds, f)))
			}
			if res.Ratios == nil {
				res.Ratios = map[string]Ratios{}
			}
			res.Ratios[id] = Ratios{RPS: s[0], P50ms: s[1], P99ms: s[2], CPUMicros: s[3]}
		}
	}
}

// markdown renders the report as a table with its context and notes.
func (r *Report) markdown() string {
	var b strings.Builder
	kind := "full"
	if r.Quick {
		kind = "QUICK=1"
	}
	fmt.Fprintf(&b, "## make bench (%s), %s\n\n", kind, r.Date)
	fmt.Fprintf(&b, "Machine: %s, %d CPUs, Linux %s, %s; load average %s before, %s after (anything else running shows here: absolute figures are noisy, ratios within a round are what count).\n",
		r.Machine.CPU, r.Machine.CPUs, r.Machine.Kernel, r.GoVersion, r.Machine.LoadBefore, r.Machine.LoadAfter)
	pinned := "not pinned"
	if r.Load.CPU != "" {
		pinned = "wrk pinned to CPU " + r.Load.CPU + ", servers to the others"
	}
	fmt.Fprintf(&b, "Method: wrk -t%d -c%d --latency on 127.0.0.1, %s; warm-up %s per scenario, then %d rounds of %s visiting the scenarios in turn; median (min–max) over rounds; ×1 and ×vs are ratios to scenario 1 and to the scenario named in vs, taken round by round. CPU is the server process's utime+stime per request.\n\n",
		r.Load.Threads, r.Load.Connections, pinned, r.Plan.Warmup, r.Plan.Rounds, r.Plan.Duration)
	b.WriteString("| # | scenario | req/s | ×1 | vs | req/s ×vs | p50 ms | p99 ms | p99 ×vs | CPU µs/req | CPU ×vs |\n")
	b.WriteString("|---|---|--:|--:|---|--:|--:|--:|--:|--:|--:|\n")
	var notes []string
	for _, res := range r.Scenarios {
		if res.Skipped != "" {
			fmt.Fprintf(&b, "| %s | %s | not measured |  |  |  |  |  |  |  |  |\n", res.ID, res.Title)
			notes = append(notes, fmt.Sprintf("%s not measured: %s", res.ID, res.Skipped))
			continue
		}
		x1, vsRPS, vsP99, vsCPU := "", "", "", ""
		if q, ok := res.Ratios["1"]; ok {
			x1 = fmtNum(q.RPS.Median, 2)
		}
		if q, ok := res.Ratios[res.Baseline]; ok {
			vsRPS, vsP99, vsCPU = fmtSummary(q.RPS, 2), fmtNum(q.P99ms.Median, 2), fmtSummary(q.CPUMicros, 2)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			res.ID, res.Title, fmtSummary(res.RPS, 0), x1, res.Baseline, vsRPS,
			fmtNum(res.P50ms.Median, 2), fmtSummary(res.P99ms, 2), vsP99, fmtSummary(res.CPUMicros, 1), vsCPU)
		for _, id := range res.Compare {
			if q, ok := res.Ratios[id]; ok {
				notes = append(notes, fmt.Sprintf("%s vs %s: req/s ×%s, p99 ×%s, CPU µs/req ×%s",
					res.ID, id, fmtSummary(q.RPS, 2), fmtSummary(q.P99ms, 2), fmtSummary(q.CPUMicros, 2)))
			}
		}
		notes = append(notes, res.Notes...)
		var requests int64
		for _, rr := range res.Rounds {
			requests += rr.Requests
		}
		if res.ExpectStatus != 0 {
			if res.Non2xx < requests {
				notes = append(notes, fmt.Sprintf("%s: only %d of %d responses were not 2xx/3xx; the path measured answers %d: its figures are not only those of the intended path", res.ID, res.Non2xx, requests, res.ExpectStatus))
			}
		} else if res.Non2xx > 0 {
			notes = append(notes, fmt.Sprintf("%s: %d responses were not 2xx/3xx: its figures are not those of the intended path", res.ID, res.Non2xx))
		}
		if res.SocketErrors > 0 {
			notes = append(notes, fmt.Sprintf("%s: %d socket errors (connect, read, write, or no answer within wrk's 2 s timeout) over all rounds", res.ID, res.SocketErrors))
		}
		for i, rr := range res.Rounds {
			if rr.Error != "" {
				notes = append(notes, fmt.Sprintf("%s, round %d: %s", res.ID, i+1, rr.Error))
			}
		}
	}
	b.WriteString("\nBuilds: ")
	var builds []string
	for _, name := range slices.Sorted(maps.Keys(r.Builds)) {
		builds = append(builds, name+" = "+r.Builds[name])
	}
	b.WriteString(strings.Join(builds, "; ") + ".\n")
	for _, n := range notes {
		b.WriteString("\n- " + n)
	}
	if len(notes) > 0 {
		b.WriteString("\n")
	}
	return b.String()
}

// fmtNum formats x with prec decimals and thousands separators; NaN is "–".
func fmtNum(x float64, prec int) string {
	if math.IsNaN(x) {
		return "–"
	}
	s := fmt.Sprintf("%.*f", prec, x)
	intPart, frac, _ := strings.Cut(s, ".")
	neg := strings.HasPrefix(intPart, "-")
	intPart = strings.TrimPrefix(intPart, "-")
	var g []string
	for len(intPart) > 3 {
		g = append([]string{intPart[len(intPart)-3:]}, g...)
		intPart = intPart[:len(intPart)-3]
	}
	g = append([]string{intPart}, g...)
	s = strings.Join(g, ",")
	if neg {
		s = "-" + s
	}
	if frac != "" {
		s += "." + frac
	}
	return s
}

// fmtSummary formats a summary as "median (min–max)".
func fmtSummary(s Summary, prec int) string {
	if math.IsNaN(s.Median) {
		return "–"
	}
	return fmt.Sprintf("%s (%s–%s)", fmtNum(s.Median, prec), fmtNum(s.Min, prec), fmtNum(s.Max, prec))
}

// describeBuild says what a build is, with versions.
func describeBuild(b Build, caddyVersion string) string {
	if b.Edge {
		return "bin/caddy from `make caddy` (Caddy " + caddyVersion + " + our modules, dependency versions from go.mod)"
	}
	s := "Caddy " + caddyVersion
	for _, p := range b.Plugins {
		s += " + " + p.PackagePath + "@" + p.Version
	}
	return s + " (xcaddy)"
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

func loadAvg() string {
	f := strings.Fields(readTrim("/proc/loadavg"))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}
