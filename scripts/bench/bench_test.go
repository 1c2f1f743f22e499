package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"encoding/xml"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/muejam/edge/internal/promtext"
)

// wrkOutput is what Debian's wrk 4.1.0 printed for `wrk -t1 -c8 -d1s --latency`.
const wrkOutput = `Running 1s test @ http://127.0.0.1:41234/data
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     4.12ms   12.18ms  79.78ms   92.45%
    Req/Sec    21.29k    13.60k   34.32k    80.00%
  Latency Distribution
     50%  212.00us
     75%    0.99ms
     90%    8.73ms
     99%   66.82ms
  21188 requests in 1.00s, 25.10MB read
Requests/sec:  21121.99
Transfer/sec:     25.02MB
`

func TestParseWrk(t *testing.T) {
	got, err := parseWrk(wrkOutput)
	if err != nil {
		t.Fatal(err)
	}
	want := WrkResult{Requests: 21188, Seconds: 1, RPS: 21121.99, P50ms: 0.212, P99ms: 66.82}
	if !near(got.P50ms, want.P50ms) || !near(got.P99ms, want.P99ms) || !near(got.Seconds, want.Seconds) ||
		got.Requests != want.Requests || got.RPS != want.RPS || got.Non2xx != 0 || got.SocketErrors != 0 {
		t.Errorf("parseWrk = %+v, want %+v", got, want)
	}

	errorsOut := strings.Replace(wrkOutput, "Requests/sec:",
		"  Socket errors: connect 1, read 2, write 3, timeout 16\n  Non-2xx or 3xx responses: 12\nRequests/sec:", 1)
	errorsOut = strings.Replace(errorsOut, "99%   66.82ms", "99%    2.00s", 1)
	got, err = parseWrk(errorsOut)
	if err != nil {
		t.Fatal(err)
	}
	if got.SocketErrors != 22 || got.Non2xx != 12 || got.P99ms != 2000 {
		t.Errorf("with errors: socket errors %d (want 22), non-2xx %d (want 12), p99 %v ms (want 2000)", got.SocketErrors, got.Non2xx, got.P99ms)
	}

	for name, out := range map[string]string{
		"no --latency":  strings.Replace(strings.Replace(wrkOutput, "     50%  212.00us\n", "", 1), "     99%   66.82ms\n", "", 1),
		"no req/s":      strings.Replace(wrkOutput, "Requests/sec:  21121.99\n", "", 1),
		"bad unit":      strings.Replace(wrkOutput, "99%   66.82ms", "99%   66.82xx", 1),
		"bad count":     strings.Replace(wrkOutput, "21188 requests", "2x188 requests", 1),
		"empty":         "",
		"connect error": "unable to connect to 127.0.0.1:1 Connection refused\n",
	} {
		if _, err := parseWrk(out); err == nil {
			t.Errorf("%s: parseWrk accepted it", name)
		}
	}
}

func TestParseWrkDuration(t *testing.T) {
	for in, want := range map[string]float64{"812.00us": 0.812, "1.23ms": 1.23, "2.00s": 2000, "1.50m": 90000, "0.99ms": 0.99} {
		got, err := parseWrkDuration(in)
		if err != nil || !near(got, want) {
			t.Errorf("parseWrkDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "12", "ms", "1.2.3ms"} {
		if _, err := parseWrkDuration(in); err == nil {
			t.Errorf("parseWrkDuration(%q) accepted it", in)
		}
	}
}

func TestParseProcStat(t *testing.T) {
	// Fields after the name: state ppid pgrp session tty tpgid flags minflt cminflt majflt
	// cmajflt utime stime cutime cstime ...; a name may hold spaces and parentheses.
	stat := "4242 (caddy (x) y) S 1 4242 4242 0 -1 4194560 8000 0 3 0 1234 567 99 88 20 0 12 0 100 2000000 3000"
	got, err := parseProcStat(stat)
	if err != nil {
		t.Fatal(err)
	}
	if got != 1234+567 {
		t.Errorf("parseProcStat = %d, want %d (utime+stime, not children's)", got, 1234+567)
	}
	for _, bad := range []string{"", "4242 caddy S 1", "4242 (caddy) S 1 2 3", "4242 (caddy) S 1 4242 4242 0 -1 4194560 8000 0 3 0 x 567 99"} {
		if _, err := parseProcStat(bad); err == nil {
			t.Errorf("parseProcStat(%q) accepted it", bad)
		}
	}
}

func TestCPUTicksGrowWithWork(t *testing.T) {
	start, err := cpuTicks(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	x := 1.0
	for time.Now().Before(deadline) {
		for i := 0; i < 1e6; i++ {
			x = math.Sqrt(x + float64(i))
		}
		now, err := cpuTicks(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if now > start {
			return
		}
	}
	t.Errorf("5 s of work did not move utime+stime of this process (%v)", x)
}

func TestCPUMicrosPerRequest(t *testing.T) {
	// 250 ticks = 2.5 s of CPU over 50,000 requests = 50 µs each.
	if got := cpuMicrosPerRequest(250, 50000); !near(got, 50) {
		t.Errorf("cpuMicrosPerRequest(250, 50000) = %v, want 50", got)
	}
	if got := cpuMicrosPerRequest(250, 0); got != 0 {
		t.Errorf("no requests: %v, want 0", got)
	}
}

func TestSummarize(t *testing.T) {
	nan := math.NaN()
	for _, tc := range []struct {
		in   []float64
		want Summary
	}{
		{[]float64{3, 1, 2}, Summary{2, 1, 3}},
		{[]float64{4, 1, 3, 2}, Summary{2.5, 1, 4}},
		{[]float64{nan, 5, nan}, Summary{5, 5, 5}},
		{[]float64{7}, Summary{7, 7, 7}},
	} {
		if got := summarize(tc.in); got != tc.want {
			t.Errorf("summarize(%v) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
	if got := summarize([]float64{nan}); !math.IsNaN(got.Median) || !math.IsNaN(got.Min) || !math.IsNaN(got.Max) {
		t.Errorf("summarize(NaN) = %+v, want all NaN", got)
	}
	b, err := json.Marshal(map[string]Summary{"x": summarize(nil), "y": {1, 0.5, 2}})
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"x":null,"y":{"median":1,"min":0.5,"max":2}}` {
		t.Errorf("JSON = %s", b)
	}
}

func TestRatiosAreTakenRoundByRound(t *testing.T) {
	nan := math.NaN()
	got := ratios([]float64{10, 20, 30, nan, 5}, []float64{30, 10, 20, 4, 0})
	want := []float64{1.0 / 3, 2, 1.5, nan, nan}
	for i := range want {
		if !(near(got[i], want[i]) || math.IsNaN(got[i]) && math.IsNaN(want[i])) {
			t.Errorf("ratios[%d] = %v, want %v", i, got[i], want[i])
		}
	}

	// The median of per-round ratios (1.5) differs from the ratio of medians (20/20 = 1).
	r := &Report{Plan: plan{Rounds: 3}}
	base := r.add(Scenario{ID: "2", Title: "proxy", Build: "stock"})
	s := r.add(Scenario{ID: "7", Title: "limiter", Build: "ratelimit", Baseline: "2"})
	for i, v := range []float64{30, 10, 20} {
		base.Rounds = append(base.Rounds, RoundResult{WrkResult: WrkResult{RPS: v, P99ms: 1}, CPUMicros: 100})
		s.Rounds = append(s.Rounds, RoundResult{WrkResult: WrkResult{RPS: []float64{10, 20, 30}[i], P99ms: 2}, CPUMicros: 150})
	}
	s.Rounds[2].Error = "wrk failed"
	lim := r.add(Scenario{ID: "6", Title: "our limiter", Build: "edge", Baseline: "7"})
	lim.Rounds = append(lim.Rounds, RoundResult{WrkResult: WrkResult{RPS: 5}}, RoundResult{WrkResult: WrkResult{RPS: 5}})
	r.finish(3)
	q := s.Ratios["2"]
	if !near(q.RPS.Median, (1.0/3+2)/2) || !near(q.P99ms.Median, 2) || !near(q.CPUMicros.Median, 1.5) {
		t.Errorf("ratios to 2 = %+v; want rps median of 1/3 and 2 (round 3 failed), p99 2, CPU 1.5", q)
	}
	if q, ok := lim.Ratios["7"]; !ok || !near(q.RPS.Median, (0.5+0.25)/2) {
		t.Errorf("ratios of 6 to its own baseline 7: %+v, %v", q, ok)
	}
	if _, ok := s.Ratios["1"]; ok {
		t.Error("a ratio to scenario 1, which did not run")
	}
	if _, ok := base.Ratios["2"]; ok {
		t.Error("a scenario has a ratio to itself")
	}
	if !near(s.RPS.Median, 15) || s.RPS.Min != 10 || s.RPS.Max != 20 {
		t.Errorf("rps summary %+v, want median 15 of rounds 1-2", s.RPS)
	}
}

func TestEveryScenarioRenders(t *testing.T) {
	d := TemplateData{Addr: "127.0.0.1:40001", Admin: "127.0.0.1:40002", Upstream: "127.0.0.1:40003",
		Body: upstreamBody(), LogFile: "/tmp/bench/access.log", DeadUpstream: "127.0.0.1:40004",
		Valkey: "127.0.0.1:40005", ValkeyCluster: "127.0.0.1:40011 127.0.0.1:40012 127.0.0.1:40013",
		JWTSecret: benchJWTSecret, JWTIssuer: benchJWTIssuer, JWTAudience: benchJWTAudience,
		App: "127.0.0.1:40006", AppMetrics: "127.0.0.1:40007", Story: "42"}
	ids := map[string]bool{}
	for _, s := range Scenarios {
		if ids[s.ID] {
			t.Errorf("scenario ID %s twice", s.ID)
		}
		ids[s.ID] = true
		if _, ok := buildByName(s.Build); !ok {
			t.Errorf("scenario %s: unknown build %q", s.ID, s.Build)
		}
		for _, b := range append([]string{s.Baseline}, s.Compare...) {
			if b != "" && !slices.ContainsFunc(Scenarios, func(o Scenario) bool { return o.ID == b }) {
				t.Errorf("scenario %s: baseline or comparison %q is not registered", s.ID, b)
			}
		}
		if s.Needs != "" && s.Needs != "valkey" && s.Needs != "valkeycluster" && s.Needs != "appserver" {
			t.Errorf("scenario %s: needs unknown service %q", s.ID, s.Needs)
		}
		if path, err := s.requestPath(d); err != nil || !strings.HasPrefix(path, "/") || strings.ContainsAny(path, "{}") {
			t.Errorf("scenario %s: path %q: %q, %v", s.ID, s.Path, path, err)
		}
		out, err := s.render(d)
		if err != nil {
			t.Errorf("scenario %s: %v", s.ID, err)
			continue
		}
		if strings.Contains(out, "<no value>") || !strings.Contains(out, "http://"+d.Addr) || !strings.Contains(out, "admin "+d.Admin) {
			t.Errorf("scenario %s: rendered Caddyfile lacks its site address or admin endpoint:\n%s", s.ID, out)
		}
		if s.Needs == "appserver" && !strings.Contains(out, "reverse_proxy "+d.App) {
			t.Errorf("scenario %s needs the app server but does not proxy to it:\n%s", s.ID, out)
		}
		if s.needsValkeyCluster() != strings.Contains(out, "valkey "+d.ValkeyCluster+" {") {
			t.Errorf("scenario %s needs %q but its Caddyfile uses the cluster or not accordingly:\n%s", s.ID, s.Needs, out)
		}
		if s.Needs == "valkey" && !strings.Contains(out, "valkey "+d.Valkey+"\n") {
			t.Errorf("scenario %s needs the bench's Valkey but does not use it:\n%s", s.ID, out)
		}
		blocks, err := caddyfile.Parse(s.Template, []byte(out))
		if err != nil {
			t.Errorf("scenario %s: %v\n%s", s.ID, err, out)
			continue
		}
		if len(blocks) != 2 || len(blocks[1].Keys) != 1 || blocks[1].Keys[0].Text != "http://"+d.Addr {
			t.Errorf("scenario %s: want a global options block and one site on %s, got %d blocks", s.ID, d.Addr, len(blocks))
		}
	}
	for _, id := range stockBaselines {
		if !ids[id] {
			t.Errorf("baseline scenario %s is not registered", id)
		}
	}
	if _, err := (Scenario{ID: "x", Template: "respond.Caddyfile"}).render(TemplateData{Body: "a`b"}); err == nil {
		t.Error("a body with a backtick was rendered into a backtick-quoted token")
	}
	if _, err := (Scenario{ID: "x", Template: "missing.Caddyfile"}).render(d); err == nil {
		t.Error("a missing template rendered")
	}
}

func TestRespondBodyIsTheUpstreamBody(t *testing.T) {
	s := Scenarios[0]
	out, err := s.render(TemplateData{Addr: "127.0.0.1:1", Admin: "off", Body: upstreamBody()})
	if err != nil {
		t.Fatal(err)
	}
	blocks, err := caddyfile.Parse(s.Template, []byte(out))
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, seg := range blocks[1].Segments {
		if seg.Directive() == "respond" && len(seg) > 1 && seg[1].Text == upstreamBody() {
			found = true
		}
	}
	if !found {
		t.Errorf("scenario 1 does not respond with the upstream's body:\n%s", out)
	}
}

func TestSelectScenarios(t *testing.T) {
	ids := func(ss []Scenario) string {
		var out []string
		for _, s := range ss {
			out = append(out, s.ID)
		}
		return strings.Join(out, ",")
	}
	all := []Scenario{{ID: "1", Quick: true}, {ID: "2", Baseline: "1", Quick: true}, {ID: "2m", Baseline: "2"}, {ID: "9", Baseline: "2m", Quick: true}}
	for _, tc := range []struct {
		only  string
		quick bool
		want  string
	}{
		{"", false, "1,2,2m,9"},
		{"", true, "1,2,2m,9"}, // 9 is quick and needs 2m, which is not but is 9's baseline
		{"2", false, "1,2"},
		{" 9 ", true, "1,2,2m,9"},
		{"1", false, "1"},
	} {
		got, err := selectScenarios(all, tc.only, tc.quick)
		if err != nil || ids(got) != tc.want {
			t.Errorf("selectScenarios(%q, quick=%v) = %s, %v; want %s", tc.only, tc.quick, ids(got), err, tc.want)
		}
	}
	withCompare := []Scenario{{ID: "1"}, {ID: "2m", Baseline: "1"}, {ID: "7", Baseline: "2m"}, {ID: "6a", Baseline: "2m", Compare: []string{"7"}}, {ID: "6b", Baseline: "2m", Compare: []string{"6a"}}}
	if got, err := selectScenarios(withCompare, "6b", false); err != nil || ids(got) != "1,2m,7,6a,6b" {
		t.Errorf("selectScenarios(6b) = %s, %v; want its comparisons' comparisons too: 1,2m,7,6a,6b", ids(got), err)
	}
	quickOnly := []Scenario{{ID: "1", Quick: true}, {ID: "3", Baseline: "1"}}
	if got, _ := selectScenarios(quickOnly, "", true); ids(got) != "1" {
		t.Errorf("quick run took %s, want 1", ids(got))
	}
	if _, err := selectScenarios(all, "1,nope", false); err == nil {
		t.Error("an unknown scenario was accepted")
	}
}

func TestPlanStaysWithinBudget(t *testing.T) {
	for _, tc := range []struct {
		n     int
		quick bool
		limit time.Duration
	}{{5, true, 90 * time.Second}, {1, true, 90 * time.Second}, {6, false, 8 * time.Minute}, {20, false, 8 * time.Minute}, {1, false, 8 * time.Minute}} {
		p := makePlan(tc.n, tc.quick)
		total := time.Duration(tc.n) * (p.Warmup + time.Duration(p.Rounds)*p.Duration)
		if total > tc.limit || p.Duration < 2*time.Second || p.Warmup < time.Second || p.Duration%time.Second != 0 ||
			p.Paced < p.Duration || !tc.quick && p.Paced < 10*time.Second {
			t.Errorf("makePlan(%d, quick=%v) = %+v: %s of load (limit %s)", tc.n, tc.quick, p, total, tc.limit)
		}
	}
	if q, f := makePlan(5, true), makePlan(5, false); q.Rounds >= f.Rounds || q.Duration > f.Duration {
		t.Errorf("quick plan %+v is not smaller than full %+v", q, f)
	}
}

func TestUpstream(t *testing.T) {
	body := upstreamBody()
	if !json.Valid([]byte(body)) || len(body) < 1024 || len(body) > 1200 {
		t.Errorf("upstream body: valid JSON %v, %d bytes; want about 1 KiB of JSON", json.Valid([]byte(body)), len(body))
	}
	srv := httptest.NewServer(upstreamHandler())
	defer srv.Close()
	for _, tc := range []struct {
		path, cacheControl string
		status             int
	}{
		{"/data", "public, max-age=300", 200},
		{"/data?max_age=3600&k=7", "public, max-age=3600", 200},
		{"/data?max_age=x", "", 400},
		{"/data?max_age=86401", "", 400},
		{"/slow?ms=1", "no-store", 200},
		{"/slow?ms=x", "", 400},
		{"/slow?ms=10001", "", 400},
		{"/nope", "", 404},
	} {
		resp, err := http.Get(srv.URL + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status || (tc.cacheControl != "" && resp.Header.Get("Cache-Control") != tc.cacheControl) {
			t.Errorf("GET %s: %d, Cache-Control %q; want %d, %q", tc.path, resp.StatusCode, resp.Header.Get("Cache-Control"), tc.status, tc.cacheControl)
		}
	}
	if err := serveUpstream(context.Background(), "0.0.0.0:1"); err == nil {
		t.Error("the upstream agreed to listen beyond loopback")
	}
}

func TestProbe(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Status", "Souin; hit; ttl=299")
		w.Write([]byte(strings.Repeat("x", 100)))
	}))
	defer srv.Close()
	ctx := context.Background()
	if err := (Probe{MinBody: 100, Header: "Cache-Status", HeaderContains: "HIT"}).check(ctx, srv.URL, nil); err != nil {
		t.Errorf("a matching response failed: %v", err)
	}
	for _, p := range []Probe{{MinBody: 101}, {Status: 404}, {Header: "Cache-Status", HeaderContains: "miss"}, {Header: "X-None", HeaderContains: "a"}} {
		if err := p.check(ctx, srv.URL, nil); err == nil {
			t.Errorf("%+v passed", p)
		}
	}
}

func TestMarkdownAndChart(t *testing.T) {
	r := newReport("v2.11.9", true, plan{Rounds: 2, Warmup: time.Second, Duration: 2 * time.Second}, wrkLoad{Threads: 1, Connections: 32})
	r.Builds["stock"] = describeBuild(Build{Name: "stock"}, "v2.11.9")
	one := r.add(Scenario{ID: "1", Title: "respond", Build: "stock"})
	two := r.add(Scenario{ID: "2", Title: "proxy", Build: "stock", Baseline: "1"})
	r.add(Scenario{ID: "5", Title: "cache", Build: "cachehandler", Baseline: "1"}).Skipped = "build failed: boom"
	for _, v := range []float64{12000, 14000} {
		one.Rounds = append(one.Rounds, RoundResult{WrkResult: WrkResult{RPS: v, P50ms: 1, P99ms: 4}, CPUMicros: 30})
		two.Rounds = append(two.Rounds, RoundResult{WrkResult: WrkResult{RPS: v / 4, P50ms: 3, P99ms: 8, Non2xx: 1}, CPUMicros: 90})
	}
	r.finish(2)
	md := r.markdown()
	for _, want := range []string{
		"| 1 | respond | 13,000 (12,000–14,000) |",
		"| 2 | proxy | 3,250 (3,000–3,500) | 0.25 | 1 | 0.25 (0.25–0.25) | 3.00 | 8.00 (8.00–8.00) | 2.00 | 90.0 (90.0–90.0) | 3.00 (3.00–3.00) |",
		"| 5 | cache | not measured |",
		"5 not measured: build failed: boom",
		"2: 2 responses were not 2xx/3xx",
		"stock = Caddy v2.11.9 (xcaddy)",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	var doc struct {
		Width  int      `xml:"width,attr"`
		Height int      `xml:"height,attr"`
		Texts  []string `xml:"text"`
	}
	if err := xml.Unmarshal(r.chart(), &doc); err != nil {
		t.Fatalf("the chart is not XML: %v", err)
	}
	if doc.Width != chartWidth || doc.Height < 3*2*rowHeight {
		t.Errorf("chart is %d×%d", doc.Width, doc.Height)
	}
	for _, want := range []string{"Throughput, requests/s (higher is better)", "not measured", "3,250"} {
		if !slices.Contains(doc.Texts, want) {
			t.Errorf("chart lacks the text %q: %q", want, doc.Texts)
		}
	}
	if _, err := json.Marshal(r); err != nil {
		t.Errorf("the report does not encode as JSON: %v", err)
	}
}

func TestFmtNum(t *testing.T) {
	for _, tc := range []struct {
		x    float64
		prec int
		want string
	}{{12345.678, 2, "12,345.68"}, {999, 0, "999"}, {1234567, 0, "1,234,567"}, {-1234.5, 1, "-1,234.5"}, {math.NaN(), 2, "–"}} {
		if got := fmtNum(tc.x, tc.prec); got != tc.want {
			t.Errorf("fmtNum(%v, %d) = %q, want %q", tc.x, tc.prec, got, tc.want)
		}
	}
}

func TestCacheKey(t *testing.T) {
	b, _ := buildByName("ratelimit")
	if got := cacheKey("v2.11.9", b.Plugins, "go1.26.8"); got != "caddy-v2.11.9_caddy-ratelimit-v0.1.0_go1.26.8" {
		t.Errorf("cacheKey = %q", got)
	}
	if got := cacheKey("v2.11.9", nil, "go1.26.8"); got != "caddy-v2.11.9_go1.26.8" {
		t.Errorf("stock cacheKey = %q", got)
	}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9*math.Max(1, math.Abs(b)) }

func TestBenchTokenIsAValidHS256JWT(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	tok := benchToken(now, time.Hour)
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q has %d parts", tok, len(parts))
	}
	mac := hmac.New(sha256.New, []byte(benchJWTSecret))
	mac.Write([]byte(parts[0] + "." + parts[1]))
	if want := base64.RawURLEncoding.EncodeToString(mac.Sum(nil)); parts[2] != want {
		t.Errorf("signature %q, want %q", parts[2], want)
	}
	var header map[string]string
	var claims map[string]any
	for i, v := range []any{&header, &claims} {
		raw, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw, v); err != nil {
			t.Fatal(err)
		}
	}
	if header["alg"] != "HS256" || claims["sub"] != benchJWTSubject || claims["iss"] != benchJWTIssuer ||
		claims["aud"] != benchJWTAudience || claims["exp"] != float64(now.Add(time.Hour).Unix()) {
		t.Errorf("header %v, claims %v", header, claims)
	}
	if len(benchJWTSecret) < 32 {
		t.Errorf("the HS256 secret has %d bytes; the jwt provider wants at least 32", len(benchJWTSecret))
	}
}

func TestParseScriptCallsAndMetrics(t *testing.T) {
	info := "# Commandstats\r\ncmdstat_ping:calls=3,usec=1,usec_per_call=0.33\r\n" +
		"cmdstat_evalsha:calls=1200,usec=9000,usec_per_call=7.50,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_eval:calls=1,usec=50,usec_per_call=50.00\r\ncmdstat_evalsha_ro:calls=99\r\n"
	if got := parseCalls(info, limiterCheck.Commands); got != 1201 {
		t.Errorf("parseCalls(eval, evalsha) = %d, want 1201", got)
	}
	if got := parseCalls(info+"cmdstat_mget:calls=42,usec=9\r\ncmdstat_mgetx:calls=5\r\n", l2Check.Commands); got != 42 {
		t.Errorf("parseCalls(mget) = %d, want 42", got)
	}
	metrics := "# HELP x\nmuejam_edge_rate_limit_fallbacks_total{zone=\"a\"} 2\n" +
		"muejam_edge_rate_limit_fallbacks_total{zone=\"b\"} 3\nmuejam_edge_rate_limit_fallbacks_total_other 7\n" +
		"muejam_edge_rate_limit_fallbacks_total 1\n"
	if got := promtext.Sum(metrics, "muejam_edge_rate_limit_fallbacks_total", ""); got != 6 {
		t.Errorf("promtext.Sum = %v, want 6", got)
	}
}

// TestAppScenarioPairs: every app-server scenario with the cache on is compared with the same
// path with it off, through the same chain but for edge_cache; a scenario of signed-in
// readers (Viewers) is compared with the anonymous hit of the same path and chain.
func TestAppScenarioPairs(t *testing.T) {
	d := TemplateData{Addr: "127.0.0.1:40001", Admin: "127.0.0.1:40002", LogFile: "/tmp/bench/access.log",
		Valkey: "127.0.0.1:40005", App: "127.0.0.1:40006", Story: "42",
		JWTSecret: benchJWTSecret, JWTIssuer: benchJWTIssuer, JWTAudience: benchJWTAudience}
	byID := map[string]Scenario{}
	for _, s := range Scenarios {
		byID[s.ID] = s
	}
	pairs := 0
	for _, on := range Scenarios {
		if on.Needs != "appserver" || strings.HasSuffix(on.ID, "0") {
			continue
		}
		if on.Viewers > 0 {
			anon, ok := byID[on.Baseline]
			if !ok || anon.Viewers != 0 || anon.Auth || anon.Path != on.Path || anon.Template != on.Template || !strings.Contains(anon.Probe.HeaderContains, "hit") {
				t.Errorf("scenario %s (signed-in readers) is compared with %q, want the anonymous hit of %s through %s", on.ID, on.Baseline, on.Path, on.Template)
			}
			continue
		}
		pairs++
		off, ok := byID[on.Baseline]
		if !ok || off.ID != on.ID+"0" || off.Needs != "appserver" || off.Path != on.Path {
			t.Errorf("scenario %s (cache on) is compared with %q, want %s0 on the same path with the cache off", on.ID, on.Baseline, on.ID)
			continue
		}
		if !strings.Contains(strings.ToLower(on.Probe.HeaderContains), "hit") {
			t.Errorf("scenario %s: the probe does not require a cache hit: %+v", on.ID, on.Probe)
		}
		onCfg, err1 := on.render(d)
		offCfg, err2 := off.render(d)
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		if !strings.Contains(onCfg, "edge_cache") || strings.Contains(offCfg, "edge_cache") {
			t.Errorf("scenario %s must run edge_cache and %s must not", on.ID, off.ID)
		}
		strip := func(cfg string) string { // the chain without comments and the cache block
			var out []string
			skip := false
			for _, line := range strings.Split(cfg, "\n") {
				switch trimmed := strings.TrimSpace(line); {
				case strings.HasPrefix(trimmed, "#"):
				case strings.HasPrefix(trimmed, "edge_cache"):
					skip = true
				case skip && line == "\t}":
					skip = false
				case !skip:
					out = append(out, line)
				}
			}
			return strings.Join(out, "\n")
		}
		if strip(onCfg) != strip(offCfg) {
			t.Errorf("scenarios %s and %s differ in more than edge_cache:\n%s\n----\n%s", on.ID, off.ID, strip(onCfg), strip(offCfg))
		}
	}
	if pairs != 3 {
		t.Errorf("%d app-server scenarios with the cache on, want 3 (discover, story, whispers)", pairs)
	}
}

func TestRequestPath(t *testing.T) {
	s := Scenario{ID: "x", Path: "/v1/stories/{story}/whispers"}
	if p, err := s.requestPath(TemplateData{Story: "7"}); err != nil || p != "/v1/stories/7/whispers" {
		t.Errorf("requestPath = %q, %v", p, err)
	}
	if _, err := s.requestPath(TemplateData{}); err == nil {
		t.Error("a path naming a story was expanded without one")
	}
	if p, err := (Scenario{Path: "/data"}).requestPath(TemplateData{}); err != nil || p != "/data" {
		t.Errorf("requestPath(/data) = %q, %v", p, err)
	}
}

func TestNeededServices(t *testing.T) {
	sel := []Scenario{{ID: "1", Build: "stock"}, {ID: "6b", Build: "edge", Needs: "valkey"}, {ID: "9a", Build: "edge", Needs: "appserver"},
		{ID: "6c", Build: "edge", Needs: "valkeycluster"}}
	for _, tc := range []struct {
		sel    []Scenario
		failed map[string]error
		want   services
	}{
		{sel[:1], nil, services{}},
		{sel[:2], nil, services{valkey: true}},
		{sel[2:3], nil, services{valkey: true, app: true}}, // the app server and the edge cache use the bench's Valkey
		{sel[3:], nil, services{cluster: true}},
		{sel, nil, services{valkey: true, cluster: true, app: true}},
		{sel, map[string]error{"edge": errors.New("no")}, services{}},
	} {
		if got := neededServices(tc.sel, tc.failed); got != tc.want {
			t.Errorf("neededServices(%d scenarios, failed %v) = %+v; want %+v", len(tc.sel), tc.failed, got, tc.want)
		}
	}
}

// TestValkeyScenarios: the scenarios that prove their answers came through Valkey count on
// the right servers, and each cluster scenario is its standalone twin but for the valkey
// block (`valkey ADDRS { cluster on }`), compared with it.
func TestValkeyScenarios(t *testing.T) {
	d := TemplateData{Addr: "127.0.0.1:40001", Admin: "127.0.0.1:40002", Upstream: "127.0.0.1:40003",
		Body: upstreamBody(), LogFile: "/tmp/bench/access.log", Valkey: "127.0.0.1:40005",
		ValkeyCluster: "127.0.0.1:40011 127.0.0.1:40012 127.0.0.1:40013"}
	byID := map[string]Scenario{}
	for _, s := range Scenarios {
		byID[s.ID] = s
		if (s.Needs == "valkey" || s.Needs == "valkeycluster") != (s.ValkeyCheck != nil) {
			t.Errorf("scenario %s needs %q and has ValkeyCheck %v: a scenario of the bench's Valkey or cluster proves it is used", s.ID, s.Needs, s.ValkeyCheck)
		}
		if s.ValkeyCheck != nil && (len(s.ValkeyCheck.Commands) == 0 || s.ValkeyCheck.What == "") {
			t.Errorf("scenario %s: ValkeyCheck %+v counts nothing", s.ID, s.ValkeyCheck)
		}
	}
	if got := byID["6b"].valkeyAddrs(d); !slices.Equal(got, []string{d.Valkey}) {
		t.Errorf("6b counts on %v", got)
	}
	if got := byID["6c"].valkeyAddrs(d); len(got) != clusterPrimaries || !slices.Equal(got, strings.Fields(d.ValkeyCluster)) {
		t.Errorf("6c counts on %v, want every node of the cluster", got)
	}
	for _, tc := range []struct{ cluster, standalone string }{{"6c", "6b"}, {"4v", "4l"}} {
		c, sa := byID[tc.cluster], byID[tc.standalone]
		if c.Needs != "valkeycluster" || sa.Needs != "valkey" || !slices.Contains(c.Compare, sa.ID) || c.Baseline != sa.Baseline ||
			c.Path != sa.Path || c.Keys != sa.Keys || c.Probe != sa.Probe || c.ValkeyCheck != sa.ValkeyCheck {
			t.Errorf("scenario %s is not %s on the cluster, compared with it: %+v vs %+v", c.ID, sa.ID, c, sa)
		}
		cCfg, err1 := c.render(d)
		sCfg, err2 := sa.render(d)
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		strip := func(cfg string) string { // without comments
			var out []string
			for _, line := range strings.Split(cfg, "\n") {
				if !strings.HasPrefix(strings.TrimSpace(line), "#") {
					out = append(out, line)
				}
			}
			return strings.Join(out, "\n")
		}
		want := strings.Replace(strip(sCfg), "valkey "+d.Valkey+"\n", "valkey "+d.ValkeyCluster+" {\n\t\t\tcluster on\n\t\t}\n", 1)
		if strip(cCfg) != want || want == strip(sCfg) {
			t.Errorf("scenario %s differs from %s in more than the valkey block:\n%s\n----\n%s", c.ID, sa.ID, strip(cCfg), want)
		}
	}
	// 4l's and 4v's L1 must not hold the entry (every hit from L2) while the body still fits
	// max_body_size (the response is stored at all): an entry weighs its body, header
	// fields and 512 bytes of overhead (modules/edgecache/entry.go).
	for _, id := range []string{"4l", "4v"} {
		if !strings.Contains(byID[id].Probe.HeaderContains, "detail=l2") {
			t.Errorf("scenario %s: the probe does not require an L2 hit: %+v", id, byID[id].Probe)
		}
		if byID[id].Keys < 100 {
			t.Errorf("scenario %s requests %d URLs in turn: one requested again at once may still be in L1", id, byID[id].Keys)
		}
		cfg, err := byID[id].render(d)
		if err != nil {
			t.Fatal(err)
		}
		size := func(opt string) int {
			for _, line := range strings.Split(cfg, "\n") {
				if f := strings.Fields(line); len(f) == 2 && f[0] == opt {
					n, err := strconv.Atoi(f[1])
					if err != nil {
						t.Fatalf("scenario %s: %s %q: %v", id, opt, f[1], err)
					}
					return n
				}
			}
			t.Fatalf("scenario %s sets no %s", id, opt)
			return 0
		}
		l1, maxBody, body := size("l1_max_size"), size("max_body_size"), len(upstreamBody())
		if maxBody < body || maxBody > l1 || l1 >= body+512 {
			t.Errorf("scenario %s: l1_max_size %d, max_body_size %d for a body of %d bytes: want body ≤ max_body_size ≤ l1_max_size < body + 512",
				id, l1, maxBody, body)
		}
	}
}

// TestSeedMarker: a bench database is reused only when its comment carries the marker of the
// same seed parameters and sources.
func TestSeedMarker(t *testing.T) {
	m := seedMarker(seedParams{Scale: 0.1, Seed: 1}, "abc")
	c := seedComment(m, time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC), 4200*time.Millisecond, 425597)
	if info, ok := matchSeedComment(c, m); !ok || info != "seeded 2026-01-02 03:04 UTC in 4.2s, 425597 rows" {
		t.Errorf("matchSeedComment(%q) = %q, %v", c, info, ok)
	}
	for _, other := range []string{
		seedMarker(seedParams{Scale: 0.2, Seed: 1}, "abc"),
		seedMarker(seedParams{Scale: 0.1, Seed: 2}, "abc"),
		seedMarker(seedParams{Scale: 0.1, Seed: 1}, "abd"),
	} {
		if _, ok := matchSeedComment(c, other); ok {
			t.Errorf("a database seeded as %q was taken for %q", m, other)
		}
	}
	for _, c := range []string{"", m, "something else; " + m} {
		if _, ok := matchSeedComment(c, m); ok && c != m {
			t.Errorf("comment %q was taken for a seeded database", c)
		}
	}
	if got := (seedParams{Scale: 0.1, Seed: 1}).args(); strings.Join(got, " ") != "-scale 0.1 -seed 1" {
		t.Errorf("args = %q", got)
	}
	if q := quoteLiteral("it's"); q != "'it''s'" {
		t.Errorf("quoteLiteral = %s", q)
	}
}

// TestSourceHash: the hash changes with the migrations and the generator, not with tests.
func TestSourceHash(t *testing.T) {
	root := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := sourceHash(root); err == nil {
		t.Error("a tree without sources hashed")
	}
	write("appserver/migrate/sql/0001_a.sql", "create table a ();")
	write("appserver/seed/gen.go", "package seed")
	h1, err := sourceHash(root)
	if err != nil {
		t.Fatal(err)
	}
	write("appserver/seed/gen_test.go", "package seed // tests")
	if h, _ := sourceHash(root); h != h1 {
		t.Error("a test file changed the hash")
	}
	write("appserver/migrate/sql/0002_b.sql", "create table b ();")
	h2, _ := sourceHash(root)
	write("appserver/seed/gen.go", "package seed // changed")
	h3, _ := sourceHash(root)
	if h2 == h1 || h3 == h2 {
		t.Errorf("hashes %s %s %s: a new migration or a changed generator must change it", h1, h2, h3)
	}
	if real, err := sourceHash(filepath.Join("..", "..")); err != nil || len(real) != 16 {
		t.Errorf("sourceHash of the checkout = %q, %v", real, err)
	}
}

func TestAppServerEnvAndNote(t *testing.T) {
	env := appServerEnv("127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3")
	want := map[string]string{
		"APP_ADDR": "127.0.0.1:1", "APP_METRICS_ADDR": "127.0.0.1:2", "VALKEY_ADDR": "127.0.0.1:3",
		"DATABASE_URL":          "postgres://postgres@127.0.0.1:55432/muejam_bench?sslmode=disable",
		"DATABASE_REPLICA_URLS": "postgres://postgres@127.0.0.1:55433/muejam_bench?sslmode=disable",
		"DATABASE_PASSWORD":     "", "MIGRATE_ON_START": "false",
	}
	got := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		got[k] = v
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s=%q, want %q", k, got[k], v)
		}
	}
	metrics := "muejam_app_http_requests_total{route=\"GET /v1/discover\",code=\"200\"} 100\n" +
		"muejam_app_http_requests_total{route=\"GET /v1/health\",code=\"200\"} 2\n" +
		"muejam_db_queries_total{node=\"primary\",kind=\"read\"} 10\n" +
		"muejam_db_queries_total{node=\"replica-1\",kind=\"read\"} 90\n" +
		"muejam_db_queries_total{node=\"primary\",kind=\"write\"} 0\n"
	if got := promtext.Sum(metrics, "muejam_db_queries_total", `node="replica`); got != 90 {
		t.Errorf("replica queries = %v, want 90", got)
	}
	c := appCounters{Requests: promtext.Sum(metrics, "muejam_app_http_requests_total", ""), Queries: 100, ReplicaQueries: 90}
	if n := appNote("9a0", c.sub(appCounters{Requests: 2}), 100, -1); n != "9a0: the app server answered 100 requests during the rounds (wrk completed 100 requests in time) and sent 100 statements, 90% to the replica (100.00 per 100 requests it answered)" {
		t.Errorf("appNote = %q", n)
	}
	if n := appNote("9a", appCounters{Requests: 1}, 5000, 3<<20); !strings.Contains(n, "answered 1 request during") || !strings.Contains(n, "no statement") ||
		!strings.HasSuffix(n, "; the edge cache's L1 then held 3.0 MiB") {
		t.Errorf("appNote = %q", n)
	}
	if n := appNote("9v", appCounters{Requests: 1}, 5000, 9334); !strings.HasSuffix(n, "; the edge cache's L1 then held 9.1 KiB") {
		t.Errorf("appNote = %q", n)
	}
}

// TestEdgeTemplatesAdapt adapts every scenario on our build with bin/caddy, when it has been
// built, so that a directive our modules reject fails here rather than at run time.
func TestEdgeTemplatesAdapt(t *testing.T) {
	bin := filepath.Join("..", "..", "bin", "caddy")
	if _, err := os.Stat(bin); err != nil {
		t.Skip("bin/caddy not built (make caddy)")
	}
	d := TemplateData{Addr: "127.0.0.1:40001", Admin: "127.0.0.1:40002", Upstream: "127.0.0.1:40003",
		Body: upstreamBody(), LogFile: filepath.Join(t.TempDir(), "access.log"), DeadUpstream: "127.0.0.1:40004",
		Valkey: "127.0.0.1:40005", ValkeyCluster: "127.0.0.1:40011 127.0.0.1:40012 127.0.0.1:40013",
		JWTSecret: benchJWTSecret, JWTIssuer: benchJWTIssuer, JWTAudience: benchJWTAudience,
		App: "127.0.0.1:40006", AppMetrics: "127.0.0.1:40007", Story: "42"}
	for _, s := range Scenarios {
		if s.Build != "edge" {
			continue
		}
		out, err := s.render(d)
		if err != nil {
			t.Fatal(err)
		}
		cfg := filepath.Join(t.TempDir(), "Caddyfile")
		if err := os.WriteFile(cfg, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
		if b, err := exec.Command(bin, "adapt", "--config", cfg, "--adapter", "caddyfile").CombinedOutput(); err != nil {
			t.Errorf("scenario %s: caddy adapt: %v\n%s", s.ID, err, b)
		}
	}
}

// TestPacedLoad: the open-loop load sends rate × duration requests, counts statuses that are
// not the expected one, and measures a slow server's delay from the due times.
func TestPacedLoad(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1)%10 == 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		time.Sleep(5 * time.Millisecond)
	}))
	defer srv.Close()
	r, err := pacedLoad(context.Background(), srv.URL, []string{"X-Test: 1"}, 500, 200*time.Millisecond, http.StatusOK)
	if err != nil {
		t.Fatal(err)
	}
	if r.Requests != 100 || hits.Load() != 100 || r.UnexpectedRCs != 10 || r.Errors != 0 {
		t.Fatalf("%+v after %d hits, want 100 requests, 10 unexpected statuses", r, hits.Load())
	}
	if r.P50ms < 5 || r.P99ms < r.P50ms || r.MaxMs < r.P99ms {
		t.Fatalf("latencies %+v: the server sleeps 5 ms", r)
	}
}

// TestKeysScript: wrk with the script of Scenario.Keys requests the keys in turn, with the
// header fields given on its command line.
func TestKeysScript(t *testing.T) {
	if s := keysScript("/data?x=1", 3); !strings.Contains(s, `"/data?x=1&k=" .. k`) || !strings.Contains(s, "n, i = {}, 3, 0") {
		t.Errorf("keysScript of a path with a query:\n%s", s)
	}
	if _, err := exec.LookPath("wrk"); err != nil {
		t.Skip("wrk is not installed")
	}
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.Header.Get("X-Test") != "1" {
			t.Errorf("request %s without the -H header field", r.URL)
		}
		got = append(got, r.URL.RequestURI())
	}))
	defer srv.Close()
	script := filepath.Join(t.TempDir(), "keys.lua")
	if err := os.WriteFile(script, []byte(keysScript("/data", 5)), 0o644); err != nil {
		t.Fatal(err)
	}
	load := wrkLoad{Threads: 1, Connections: 1}
	if _, err := load.run(context.Background(), srv.URL+"/data", time.Second, []string{"X-Test: 1"}, script); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) < 10 {
		t.Fatalf("wrk sent %d requests in 1 s", len(got))
	}
	// wrk may call request() once before it connects: the turn starts anywhere.
	first, err := strconv.Atoi(strings.TrimPrefix(got[0], "/data?k="))
	if err != nil {
		t.Fatalf("first request %s", got[0])
	}
	for i, uri := range got[:10] {
		if want := "/data?k=" + strconv.Itoa((first+i)%5); uri != want {
			t.Fatalf("request %d: %s, want %s (all: %v)", i, uri, want, got[:10])
		}
	}
}

// TestViewersScript: wrk with the script of Scenario.Viewers sends the readers' tokens in
// turn, each a valid token of its reader, with the header fields given on its command line.
func TestViewersScript(t *testing.T) {
	if _, err := exec.LookPath("wrk"); err != nil {
		t.Skip("wrk is not installed")
	}
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.Header.Get("X-Test") != "1" {
			t.Errorf("request %s without the -H header field", r.URL)
		}
		if r.URL.RequestURI() != "/feed?tab=new" {
			t.Errorf("request %s, want /feed?tab=new", r.URL)
		}
		got = append(got, r.Header.Get("Authorization"))
	}))
	defer srv.Close()
	script, err := writeViewers(t.TempDir(), "/feed?tab=new", 4)
	if err != nil {
		t.Fatal(err)
	}
	load := wrkLoad{Threads: 1, Connections: 1}
	if _, err := load.run(context.Background(), srv.URL+"/feed?tab=new", time.Second, []string{"X-Test: 1", "Authorization: Bearer other"}, script); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) < 10 {
		t.Fatalf("wrk sent %d requests in 1 s", len(got))
	}
	subject := func(auth string) string {
		parts := strings.Split(strings.TrimPrefix(auth, "Bearer "), ".")
		if len(parts) != 3 {
			t.Fatalf("Authorization %q is not a bearer JWT", auth)
		}
		claims, err := base64.RawURLEncoding.DecodeString(parts[1])
		if err != nil {
			t.Fatal(err)
		}
		var c struct{ Sub string }
		if err := json.Unmarshal(claims, &c); err != nil {
			t.Fatal(err)
		}
		mac := hmac.New(sha256.New, []byte(benchJWTSecret))
		mac.Write([]byte(parts[0] + "." + parts[1]))
		if sig, _ := base64.RawURLEncoding.DecodeString(parts[2]); !hmac.Equal(sig, mac.Sum(nil)) {
			t.Fatalf("the token of %s is not signed with the bench key", c.Sub)
		}
		return c.Sub
	}
	first, err := strconv.Atoi(strings.TrimPrefix(subject(got[0]), "u"))
	if err != nil {
		t.Fatalf("first subject %s", subject(got[0]))
	}
	for i, auth := range got[:10] {
		if want := viewerSubject((first-1+i)%4 + 1); subject(auth) != want {
			t.Fatalf("request %d as %s, want %s", i, subject(auth), want)
		}
	}
}

func TestValkeyNote(t *testing.T) {
	got := formatValkeyNote("4v", l2Check, 3, 8000, 8010, []float64{8000, 0, 0, 2})
	want := "4v: during the rounds the cluster's 3 primaries ran 8,000 MGETs (L2 lookups) for 8,010 requests wrk completed (1.00 per request); L1 evictions 8,000; L2 errors 0; L2 writes dropped 0; misses 2"
	if got != want {
		t.Errorf("note\n%s\nwant\n%s", got, want)
	}
	if got := formatValkeyNote("6b", limiterCheck, 1, 0, 0, nil); got != "6b: during the rounds Valkey ran 0 scripts for 0 requests wrk completed (– per request); fallbacks to local windows –" {
		t.Errorf("note %s", got)
	}
}

// TestPrimeKeys: every URL is requested once, then each must pass the probe; one that fails
// at first is tried again.
func TestPrimeKeys(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.URL.RequestURI()]++
		n := seen[r.URL.RequestURI()]
		mu.Unlock()
		// k=3 is still in "L1" on its second request; every other is an L2 hit from its second.
		if n >= 2 && (r.URL.Query().Get("k") != "3" || n >= 3) {
			w.Header().Set("Cache-Status", "muejam-edge; hit; ttl=299; detail=l2")
		}
	}))
	defer srv.Close()
	pr := Probe{Header: "Cache-Status", HeaderContains: "; detail=l2"}
	if err := primeKeys(context.Background(), srv.URL+keyPrefix("/data"), 5, pr, nil); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 5 || seen["/data?k=0"] != 2 || seen["/data?k=3"] != 3 || seen["/data?k=4"] != 2 {
		t.Errorf("requests: %v", seen)
	}
	if keyPrefix("/v1/x?a=b") != "/v1/x?a=b&k=" {
		t.Errorf("keyPrefix = %s", keyPrefix("/v1/x?a=b"))
	}
}
