package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/muejam/edge/internal/freeport"
)

// reservedPorts are ports other people's tests and services on this machine use; freeAddr never
// returns them even when they happen to be free: among them the dev Valkey Cluster's nodes
// (47001-47006, scripts/services.sh) and their cluster bus ports (57001-57006).
var reservedPorts = []int{2019, 2997, 2998, 2999, 8080, 8081, 9080, 9081, 9180, 9443, 9543, 55432, 55433, 56379,
	47001, 47002, 47003, 47004, 47005, 47006, 57001, 57002, 57003, 57004, 57005, 57006}

// freeAddr returns 127.0.0.1:PORT for a port the kernel reports free and nobody reserved.
func freeAddr() (string, error) {
	for range 20 {
		port, err := freeport.Port()
		if err != nil {
			return "", err
		}
		if !slices.Contains(reservedPorts, port) {
			return "127.0.0.1:" + strconv.Itoa(port), nil
		}
	}
	return "", errors.New("no free port outside the reserved ones")
}

// proc is a server process the bench started; its output goes to a log file in its run
// directory.
type proc struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed when the process has exited
	err  error         // its exit status, once done is closed
}

// procSet is every process the bench started, so that all of them stop however the run ends.
type procSet struct{ procs []*proc }

// start runs name with args, its output in dir/out.log, pinned to cpus when cpus is set. The
// process gets SIGTERM if the bench dies first.
func (ps *procSet) start(dir, cpus, name string, args ...string) (*proc, error) {
	return ps.startEnv(dir, cpus, nil, name, args...)
}

// startEnv is start with env ("KEY=value") added to the bench's environment; its values win.
func (ps *procSet) startEnv(dir, cpus string, env []string, name string, args ...string) (*proc, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "out.log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if cpus != "" {
		args = append([]string{"-c", cpus, name}, args...)
		name = "taskset"
	}
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"), "XDG_DATA_HOME="+filepath.Join(dir, "data"))
	cmd.Env = append(cmd.Env, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	ps.procs = append(ps.procs, p)
	return p, nil
}

// stopAll sends SIGTERM to every process still running and waits up to 5 s for each before
// killing it.
func (ps *procSet) stopAll() {
	for _, p := range ps.procs {
		p.stop()
	}
	ps.procs = nil
}

func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// exited reports why the process is gone, with the end of its log, or nil while it runs.
func (p *proc) exited() error {
	select {
	case <-p.done:
		tail, _ := os.ReadFile(p.log)
		if len(tail) > 1500 {
			tail = tail[len(tail)-1500:]
		}
		return fmt.Errorf("process exited (%v); end of %s:\n%s", p.err, p.log, tail)
	default:
		return nil
	}
}

// waitStatus polls url until it answers status (any status when 0), the process exits, or
// timeout passes.
func (p *proc) waitStatus(ctx context.Context, url string, status int, timeout time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for {
		if err := p.exited(); err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		var last string
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
			resp.Body.Close()
			if status == 0 || resp.StatusCode == status {
				return nil
			}
			last = fmt.Sprintf("status %d: %s", resp.StatusCode, body)
		} else {
			last = err.Error()
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			want := "answer"
			if status != 0 {
				want = fmt.Sprintf("answer %d", status)
			}
			return fmt.Errorf("%s did not %s within %s: %s (log: %s)", url, want, timeout, firstLine(last), p.log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// check sends one GET to url with headers ("Name: value") and compares the response with pr.
func (pr Probe) check(ctx context.Context, url string, headers []string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	for _, h := range headers {
		name, value, _ := strings.Cut(h, ":")
		req.Header.Add(strings.TrimSpace(name), strings.TrimSpace(value))
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	want := pr.Status
	if want == 0 {
		want = http.StatusOK
	}
	switch {
	case resp.StatusCode != want:
		return fmt.Errorf("probe: status %d, want %d", resp.StatusCode, want)
	case len(body) < pr.MinBody:
		return fmt.Errorf("probe: body of %d bytes, want at least %d", len(body), pr.MinBody)
	case pr.Header != "" && !strings.Contains(strings.ToLower(resp.Header.Get(pr.Header)), strings.ToLower(pr.HeaderContains)):
		return fmt.Errorf("probe: header %s is %q, want it to contain %q", pr.Header, resp.Header.Get(pr.Header), pr.HeaderContains)
	}
	return nil
}

// primeKeys requests prefix+"0" … prefix+(keys-1) once each, then checks each with the probe,
// retrying for up to 10 s in all (a cache stores asynchronously): for 4l and 4v, every URL
// wrk will request is then in L2.
func primeKeys(ctx context.Context, prefix string, keys int, pr Probe, headers []string) error {
	client := &http.Client{Timeout: 5 * time.Second}
	for k := range keys {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, prefix+strconv.Itoa(k), nil)
		if err != nil {
			return err
		}
		for _, h := range headers {
			name, value, _ := strings.Cut(h, ":")
			req.Header.Add(strings.TrimSpace(name), strings.TrimSpace(value))
		}
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("priming %s: %w", req.URL, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	deadline := time.Now().Add(10 * time.Second)
	pending := make([]int, keys)
	for k := range pending {
		pending[k] = k
	}
	for {
		var failed []int
		var last error
		for _, k := range pending {
			if err := pr.check(ctx, prefix+strconv.Itoa(k), headers); err != nil {
				failed, last = append(failed, k), fmt.Errorf("primed %s%d, %w", prefix, k, err)
			}
		}
		if len(failed) == 0 {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d primed URLs fail the probe; %w", len(failed), keys, last)
		}
		pending = failed
		time.Sleep(100 * time.Millisecond)
	}
}

// liveScenario is a scenario whose server is running and passed its probe.
type liveScenario struct {
	s       Scenario
	p       *proc
	url     string
	headers []string // sent with every request ("Name: value")
	admin   string   // Caddy's admin endpoint
	script  string   // the wrk Lua script of Scenario.Keys, if any
	valkeys []string // the Valkey servers its ValkeyCheck counts on (a cluster's primaries), if any
	app     string   // the internal metrics listener of the app server it uses, if any
	// valkeyCalls is how many of its ValkeyCheck's commands those servers ran during the
	// measured rounds, valkeyMetrics how much each of the check's Metrics grew in them.
	valkeyCalls   int64
	valkeyMetrics []float64
	// appTotal is what reached the app server over the measured rounds.
	appTotal appCounters
	res      *ScenarioResult
}

// startScenario renders s's Caddyfile into dir with d (its Addr, Admin, LogFile and
// DeadUpstream filled in here), starts bin on it, waits until it answers and checks the probe
// (retrying for up to 3 s: a cache may store a response asynchronously). A scenario with a
// ValkeyCheck must also have made its Valkey (or cluster) run the commands checked.
func startScenario(ctx context.Context, ps *procSet, s Scenario, bin, dir, cpus string, d TemplateData, headers []string) (*liveScenario, error) {
	if s.needsValkey() && d.Valkey == "" {
		return nil, errors.New("needs Valkey, which did not start")
	}
	if s.needsValkeyCluster() && d.ValkeyCluster == "" {
		return nil, errors.New("needs the Valkey Cluster, which did not start")
	}
	if s.Needs == "appserver" && d.App == "" {
		return nil, errors.New("needs the app server, which did not start")
	}
	path, err := s.requestPath(d)
	if err != nil {
		return nil, err
	}
	for _, a := range []*string{&d.Addr, &d.Admin, &d.DeadUpstream} {
		if *a, err = freeAddr(); err != nil {
			return nil, err
		}
	}
	d.LogFile = filepath.Join(dir, "access.log")
	caddyfile, err := s.render(d)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var script string
	switch {
	case s.Keys > 0:
		script = filepath.Join(dir, "keys.lua")
		if err := os.WriteFile(script, []byte(keysScript(path, s.Keys)), 0o644); err != nil {
			return nil, err
		}
	case s.Viewers > 0:
		if script, err = writeViewers(dir, path, s.Viewers); err != nil {
			return nil, err
		}
		headers = append(slices.Clone(headers), "Authorization: Bearer "+benchTokenFor(viewerSubject(1), time.Now(), 2*time.Hour))
	}
	cfg := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(cfg, []byte(caddyfile), 0o644); err != nil {
		return nil, err
	}
	p, err := ps.start(dir, cpus, bin, "run", "--config", cfg, "--adapter", "caddyfile")
	if err != nil {
		return nil, err
	}
	url := "http://" + d.Addr + path
	if err := p.waitStatus(ctx, url, 0, 30*time.Second); err != nil {
		return nil, err
	}
	var valkeys []string
	calls0 := int64(-1)
	if c := s.ValkeyCheck; c != nil {
		valkeys = s.valkeyAddrs(d)
		if calls0, err = valkeyCalls(valkeys, c.Commands); err != nil {
			return nil, fmt.Errorf("valkey: %w", err)
		}
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		err = s.Probe.check(ctx, url, headers)
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		return nil, err
	}
	if calls0 >= 0 {
		calls, err := valkeyCalls(valkeys, s.ValkeyCheck.Commands)
		if err != nil {
			return nil, fmt.Errorf("valkey: %w", err)
		}
		if calls <= calls0 {
			return nil, fmt.Errorf("probe: Valkey at %s ran no %s for the probe (the module is not using Valkey, or fell back)",
				strings.Join(valkeys, ","), s.ValkeyCheck.What)
		}
	}
	if s.Keys > 0 {
		if err := primeKeys(ctx, "http://"+d.Addr+keyPrefix(path), s.Keys, s.Probe, headers); err != nil {
			return nil, err
		}
	}
	return &liveScenario{s: s, p: p, url: url, headers: headers, script: script, admin: d.Admin, valkeys: valkeys, app: d.AppMetrics}, nil
}

// writeViewers writes, under dir, the tokens of n readers (viewerSubject 1…n, valid for two
// hours) one a line and the viewersScript that sends path as each of them in turn; it
// returns the script's path.
func writeViewers(dir, path string, n int) (string, error) {
	var b strings.Builder
	now := time.Now()
	for i := 1; i <= n; i++ {
		b.WriteString(benchTokenFor(viewerSubject(i), now, 2*time.Hour))
		b.WriteByte('\n')
	}
	tokens := filepath.Join(dir, "viewers.tokens")
	if err := os.WriteFile(tokens, []byte(b.String()), 0o600); err != nil {
		return "", err
	}
	script := filepath.Join(dir, "viewers.lua")
	return script, os.WriteFile(script, []byte(viewersScript(path, tokens)), 0o644)
}

// RoundResult is one scenario's figures in one round.
type RoundResult struct {
	WrkResult
	// CPUMicros is the server's CPU time per request, in µs.
	CPUMicros float64 `json:"cpu_us_per_request"`
	// Error says why the round has no figures.
	Error string `json:"error,omitempty"`
}

// measure loads the scenario for d and charges the server's CPU time over the run to the
// requests wrk completed.
func (ls *liveScenario) measure(ctx context.Context, load wrkLoad, d time.Duration) (RoundResult, error) {
	pid := ls.p.cmd.Process.Pid
	var app0 appCounters
	if ls.app != "" {
		var err error
		if app0, err = readAppCounters(ctx, ls.app); err != nil {
			return RoundResult{}, fmt.Errorf("app server metrics: %w", err)
		}
	}
	var calls0 int64
	var metrics0 []float64
	if c := ls.s.ValkeyCheck; c != nil {
		var err error
		if metrics0, err = c.readMetrics(ctx, ls.admin); err != nil {
			return RoundResult{}, err
		}
		if calls0, err = valkeyCalls(ls.valkeys, c.Commands); err != nil {
			return RoundResult{}, fmt.Errorf("valkey: %w", err)
		}
	}
	before, err := cpuTicks(pid)
	if err != nil {
		return RoundResult{}, err
	}
	w, err := load.run(ctx, ls.url, d, ls.headers, ls.script)
	if err != nil {
		return RoundResult{}, err
	}
	after, err := cpuTicks(pid)
	if err != nil {
		return RoundResult{}, err
	}
	if err := ls.p.exited(); err != nil {
		return RoundResult{}, err
	}
	if c := ls.s.ValkeyCheck; c != nil {
		calls1, err := valkeyCalls(ls.valkeys, c.Commands)
		if err != nil {
			return RoundResult{}, fmt.Errorf("valkey: %w", err)
		}
		metrics1, err := c.readMetrics(ctx, ls.admin)
		if err != nil {
			return RoundResult{}, err
		}
		ls.valkeyCalls += calls1 - calls0
		if ls.valkeyMetrics == nil {
			ls.valkeyMetrics = make([]float64, len(c.Metrics))
		}
		for i := range metrics1 {
			ls.valkeyMetrics[i] += metrics1[i] - metrics0[i]
		}
	}
	if ls.app != "" {
		// The requests in flight when wrk stopped finish within this round's window.
		select {
		case <-ctx.Done():
			return RoundResult{}, ctx.Err()
		case <-time.After(appSettle):
		}
		app1, err := readAppCounters(ctx, ls.app)
		if err != nil {
			return RoundResult{}, fmt.Errorf("app server metrics: %w", err)
		}
		c := app1.sub(app0)
		ls.appTotal.Requests += c.Requests
		ls.appTotal.Queries += c.Queries
		ls.appTotal.ReplicaQueries += c.ReplicaQueries
	}
	return RoundResult{WrkResult: w, CPUMicros: cpuMicrosPerRequest(after-before, w.Requests)}, nil
}

// profile takes a CPU profile of the scenario's server from its admin endpoint's
// /debug/pprof/ while wrk loads it for d, and writes it to file.
func (ls *liveScenario) profile(ctx context.Context, load wrkLoad, d time.Duration, file string) error {
	secs := max(1, int(d/time.Second)-1)
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", ls.admin, secs)
	type result struct {
		body []byte
		err  error
	}
	done := make(chan result, 1)
	go func() {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			done <- result{err: err}
			return
		}
		resp, err := (&http.Client{Timeout: d + 10*time.Second}).Do(req)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("%s: %s", url, resp.Status)
		}
		done <- result{body, err}
	}()
	if _, err := load.run(ctx, ls.url, d, ls.headers, ls.script); err != nil {
		return err
	}
	r := <-done
	if r.err != nil {
		return r.err
	}
	return os.WriteFile(file, r.body, 0o644)
}
