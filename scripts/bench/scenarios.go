package main

import (
	"bytes"
	"embed"
	"fmt"
	"strconv"
	"strings"
	"text/template"
)

// Scenario is one configuration measured under load: a Caddyfile template, the build it runs
// on, the path wrk requests, and what a single request must show before any load is sent.
// Adding a scenario is a template under templates/ and an entry in Scenarios (see README.md).
type Scenario struct {
	// ID is the short name used in tables, ratios and -only ("1", "2m", "5").
	ID string
	// Title says what is measured, in a few words.
	Title string
	// Build names the binary (see Builds).
	Build string
	// Template is a file under templates/, rendered with TemplateData.
	Template string
	// Baseline is the ID of the scenario this one is compared with in the vs columns: a stock
	// one ("1", "2", "2m") or any other registered scenario (our chain without a limiter, for
	// the limiter). Empty for scenario 1 itself. It is always run along.
	Baseline string
	// Path is the request path and query wrk sends. In app-server scenarios, {story} stands
	// for the ID of a seeded published story (TemplateData.Story).
	Path string
	// Keys, when positive, makes wrk request Path with a query parameter k=0…Keys-1 in turn
	// (a wrk Lua script, keysScript), so that the server sees Keys distinct URLs, each again
	// only after the Keys-1 others. The probe and the paced load request Path itself; before
	// the warm-up, each of the Keys URLs is requested once and must then pass the probe
	// (primeKeys: for 4l and 4v, every URL is in L2 before any load).
	Keys int
	// Probe is checked on one request after a priming one, before the warm-up.
	Probe Probe
	// Quick includes the scenario in QUICK=1 runs.
	Quick bool
	// Compare names further registered scenarios this one is compared with, besides Baseline
	// and the stock ones (our limiter with caddy-ratelimit); they are run along, and the ratios
	// are listed under the table.
	Compare []string
	// Auth sends a bearer token on every request, probe and wrk alike: an HS256 JWT the harness
	// mints with JWTSecret, JWTIssuer and JWTAudience (see benchToken).
	Auth bool
	// Viewers, when positive, sends each request as one of Viewers distinct signed-in users
	// in turn, each with its own token (subjects u1…uViewers: the seeded users' ids, and
	// beyond them users the database has never seen), through a wrk Lua script
	// (viewersScript) that reads the tokens the harness minted from a file. The probe is
	// sent as u1.
	Viewers int
	// Paced, when positive, also measures the scenario's latency at this many requests per
	// second, open loop, after the rounds (see pacedLoad): the figure for latency targets
	// "at load" that wrk's saturation cannot give.
	Paced int
	// Needs names a service the harness starts before the scenario: "valkey" (a valkey-server
	// or redis-server on a free loopback port, without persistence; TemplateData.Valkey),
	// "valkeycluster" (a private Valkey Cluster of 3 primaries without replicas on free
	// loopback ports, without persistence; TemplateData.ValkeyCluster), or "appserver": the
	// dev Postgres primary and replica (scripts/services.sh up), a seeded bench database,
	// bin/appserver over it (TemplateData.App, Story) and the Valkey of "valkey", which the
	// app server and the edge cache use.
	Needs string
	// ValkeyCheck, for a scenario that needs "valkey" or "valkeycluster", is what its
	// requests must make that Valkey do: the probe fails unless the request after the
	// priming one did it, and the run notes how often it was done against the requests
	// measured. Nil: no check (the app-server scenarios).
	ValkeyCheck *ValkeyCheck
}

// ValkeyCheck proves that a scenario's answers came through Valkey (the limiter's decisions,
// the edge cache's L2 hits) and not from a fallback or L1: it counts commands in INFO
// commandstats, summed over a cluster's primaries, and reports Caddy metrics beside them.
type ValkeyCheck struct {
	// Commands are the INFO commandstats names, without "cmdstat_", whose calls are counted.
	Commands []string
	// What names the counted commands in the note ("scripts").
	What string
	// Metrics are Caddy metrics summed over their samples (those whose labels contain
	// Labels, when set), read before and after each round; the note reports how much they
	// grew during the rounds, under Label.
	Metrics []NoteMetric
}

// NoteMetric is a Caddy metric a run's note reports.
type NoteMetric struct{ Label, Name, Labels string }

// limiterCheck: every limiter decision of 6b and 6c runs the limiter's script on Valkey
// (concurrent requests of one key may share a call), and a fallback to local windows is
// counted by the module.
var limiterCheck = &ValkeyCheck{
	Commands: []string{"eval", "evalsha"},
	What:     "scripts",
	Metrics:  []NoteMetric{{Label: "fallbacks to local windows", Name: "muejam_edge_rate_limit_fallbacks_total"}},
}

// l2Check: an L2 lookup of edge_cache is one MGET (the Vary record and the variant of a
// primary key, in one slot); an answer from L1 sends none, and a miss (also one MGET) is
// counted by the module.
var l2Check = &ValkeyCheck{
	Commands: []string{"mget"},
	What:     "MGETs (L2 lookups)",
	Metrics: []NoteMetric{
		{Label: "L1 evictions", Name: "muejam_edge_cache_l1_evictions_total"},
		{Label: "L2 errors", Name: "muejam_edge_cache_l2_errors_total"},
		{Label: "L2 writes dropped", Name: "muejam_edge_cache_l2_writes_dropped_total"},
		{Label: "misses", Name: "muejam_edge_cache_lookups_total", Labels: `outcome="miss"`},
	},
}

// l2Keys is how many URLs 4l and 4v request in turn: each comes back about 100 ms later at
// 10,000 requests/s, long after L1 evicted it.
const l2Keys = 1000

// needsValkey reports whether the scenario needs the bench's own Valkey.
func (s Scenario) needsValkey() bool { return s.Needs == "valkey" || s.Needs == "appserver" }

// needsValkeyCluster reports whether the scenario needs the bench's own Valkey Cluster.
func (s Scenario) needsValkeyCluster() bool { return s.Needs == "valkeycluster" }

// valkeyAddrs are the Valkey servers the scenario's ValkeyCheck counts on: the bench's
// Valkey, or every node of its cluster (all primaries).
func (s Scenario) valkeyAddrs(d TemplateData) []string {
	switch s.Needs {
	case "valkey":
		return []string{d.Valkey}
	case "valkeycluster":
		return strings.Fields(d.ValkeyCluster)
	}
	return nil
}

// requestPath is Path with {story} replaced by d.Story; it fails when Path names a story and
// there is none.
func (s Scenario) requestPath(d TemplateData) (string, error) {
	if !strings.Contains(s.Path, "{story}") {
		return s.Path, nil
	}
	if d.Story == "" {
		return "", fmt.Errorf("scenario %s: path %s needs a seeded story, and there is none", s.ID, s.Path)
	}
	return strings.ReplaceAll(s.Path, "{story}", d.Story), nil
}

// Probe is what one response must show for a scenario to be measured at all, so that a run
// never reports the speed of a misconfiguration (a 404, a cache that never hits, a 429).
type Probe struct {
	// Status is the expected status code. Default: 200.
	Status int
	// MinBody is the smallest acceptable body, in bytes.
	MinBody int
	// Header, when set, names a response header that must be present.
	Header string
	// HeaderContains is what Header must contain, case-insensitively.
	HeaderContains string
}

// Scenarios is the registry, in the order of every round. Scenarios of later issues (our full
// chain, our cache hit, our limiter local and Valkey, breaker open, app-server feeds) are added
// here, each with its template.
var Scenarios = []Scenario{
	{ID: "1", Title: "stock respond 1 KiB", Build: "stock", Template: "respond.Caddyfile",
		Path: "/", Probe: Probe{MinBody: 1024}, Quick: true, Paced: pacedRate},
	{ID: "1m", Title: "stock respond 1 KiB + metrics + JSON log", Build: "stock", Template: "respond-metrics-log.Caddyfile",
		Baseline: "1", Path: "/", Probe: Probe{MinBody: 1024}, Quick: true},
	{ID: "2", Title: "stock reverse_proxy", Build: "stock", Template: "proxy.Caddyfile",
		Baseline: "1", Path: "/data", Probe: Probe{MinBody: 1024}, Quick: true},
	{ID: "2m", Title: "stock reverse_proxy + metrics + JSON log", Build: "stock", Template: "proxy-metrics-log.Caddyfile",
		Baseline: "2", Path: "/data", Probe: Probe{MinBody: 1024}, Quick: true},
	{ID: "2e", Title: "bin/caddy, same config as 2m", Build: "edge", Template: "proxy-metrics-log.Caddyfile",
		Baseline: "2m", Path: "/data", Probe: Probe{MinBody: 1024}},
	{ID: "2p", Title: "bin/caddy, 2e with the access log through pii_scrub", Build: "edge", Template: "proxy-metrics-piilog.Caddyfile",
		Baseline: "2e", Path: "/data", Probe: Probe{MinBody: 1024}},
	{ID: "5", Title: "cache-handler v0.16.0 hit", Build: "cachehandler", Template: "cache-handler.Caddyfile",
		Baseline: "1", Path: "/data", Probe: Probe{MinBody: 1024, Header: "Cache-Status", HeaderContains: "hit"}, Quick: true},
	{ID: "3", Title: "our full chain, miss path, no cache: jwt + limiter + breaker transport + metrics + PII-scrubbed JSON log, buffered",
		Build: "edge", Template: "edge-chain.Caddyfile", Baseline: "2m", Path: "/data", Auth: true,
		Probe: Probe{MinBody: 1024, Header: "RateLimit-Policy", HeaderContains: `"user"`}, Quick: true},
	{ID: "4", Title: "our edge_cache hit (L1), bare like 5", Build: "edge", Template: "edge-cache-hit.Caddyfile",
		Baseline: "1", Compare: []string{"5"}, Path: "/data",
		Probe: Probe{MinBody: 1024, Header: "Cache-Status", HeaderContains: "muejam-edge; hit"}, Quick: true},
	// 4l and 4v: 4 with an L1 too small to hold the entry, so that every hit is an L2 hit
	// (Cache-Status: muejam-edge; hit; ttl=N; detail=l2), on a standalone Valkey and on a
	// cluster. An L2 hit puts the entry in L1, which evicts it asynchronously (otter's
	// maintenance): a URL requested again at once is often still there (about 40% of the
	// requests of one URL at 32 connections were L1 hits), hence l2Keys URLs in turn, stored
	// in L2 before the warm-up (primeKeys), fresh for an hour (max_age=3600: the default 300
	// s ends within a full run, and 1000 entries expiring at once would be 1000 misses).
	{ID: "4l", Title: "our edge_cache hit from L2 (standalone Valkey; L1 too small to hold it)", Build: "edge", Template: "edge-cache-l2.Caddyfile",
		Baseline: "1", Compare: []string{"4"}, Path: "/data?max_age=3600", Keys: l2Keys, Needs: "valkey", ValkeyCheck: l2Check,
		Probe: Probe{MinBody: 1024, Header: "Cache-Status", HeaderContains: "; detail=l2"}},
	{ID: "4v", Title: "our edge_cache hit from L2 on a 3-primary Valkey Cluster (4l on the cluster)", Build: "edge", Template: "edge-cache-l2-cluster.Caddyfile",
		Baseline: "1", Compare: []string{"4l"}, Path: "/data?max_age=3600", Keys: l2Keys, Needs: "valkeycluster", ValkeyCheck: l2Check,
		Probe: Probe{MinBody: 1024, Header: "Cache-Status", HeaderContains: "; detail=l2"}, Quick: true},
	{ID: "4c", Title: "our full chain of 3 + edge_cache, hit (L1)", Build: "edge", Template: "edge-chain-hit.Caddyfile",
		Baseline: "1", Compare: []string{"1m", "3", "2m"}, Path: "/data", Auth: true,
		Probe: Probe{MinBody: 1024, Header: "Cache-Status", HeaderContains: "muejam-edge; hit"}, Quick: true},
	{ID: "6a", Title: "our limiter, local (2m + edge_rate_limit)", Build: "edge", Template: "edge-ratelimit-local.Caddyfile",
		Baseline: "2m", Compare: []string{"7"}, Path: "/data",
		Probe: Probe{MinBody: 1024, Header: "RateLimit-Policy", HeaderContains: `"bench"`}, Quick: true},
	{ID: "6h", Title: "our limiter, local, disable_headers (6a sending no header fields, as 7 on allowed requests)", Build: "edge", Template: "edge-ratelimit-local-noheaders.Caddyfile",
		Baseline: "2m", Compare: []string{"7"}, Path: "/data", Probe: Probe{MinBody: 1024}},
	{ID: "6b", Title: "our limiter, Valkey mode (2m + edge_rate_limit + valkey)", Build: "edge", Template: "edge-ratelimit-valkey.Caddyfile",
		Baseline: "2m", Compare: []string{"6a"}, Path: "/data", Needs: "valkey", ValkeyCheck: limiterCheck,
		Probe: Probe{MinBody: 1024, Header: "RateLimit-Policy", HeaderContains: `"bench"`}, Quick: true},
	{ID: "6c", Title: "our limiter, Valkey Cluster mode (6b on a 3-primary cluster)", Build: "edge", Template: "edge-ratelimit-valkey-cluster.Caddyfile",
		Baseline: "2m", Compare: []string{"6b"}, Path: "/data", Needs: "valkeycluster", ValkeyCheck: limiterCheck,
		Probe: Probe{MinBody: 1024, Header: "RateLimit-Policy", HeaderContains: `"bench"`}, Quick: true},
	{ID: "7", Title: "caddy-ratelimit v0.1.0, in memory (2m + rate_limit)", Build: "ratelimit", Template: "caddy-ratelimit.Caddyfile",
		Baseline: "2m", Path: "/data", Probe: Probe{MinBody: 1024}, Quick: true},
	{ID: "8", Title: "breaker open: circuit_breaker short-circuit 503", Build: "edge", Template: "breaker-open.Caddyfile",
		Baseline: "1", Path: "/data",
		Probe: Probe{Status: 503, MinBody: 32, Header: "Content-Type", HeaderContains: "problem+json"}, Quick: true,
		Paced: pacedRate},

	// 9: the app server on seeded data (bin/appserver over the dev Postgres primary and
	// replica) behind our chain for anonymous readers, with edge_cache off (every request
	// reaches the app server and Postgres; compared with 3, the same chain to the 1 KiB
	// upstream) and on (hits from L1; compared with the same path off).
	{ID: "9a0", Title: "app: discover feed (tab=new), our chain, cache off", Build: "edge", Template: "app-chain.Caddyfile",
		Baseline: "3", Path: "/v1/discover?tab=new", Needs: "appserver", Paced: appPacedRate, Quick: true,
		Probe: Probe{MinBody: 1024, Header: "RateLimit-Policy", HeaderContains: `"ip"`}},
	{ID: "9a", Title: "app: discover feed (tab=new), our chain, cache on (hit)", Build: "edge", Template: "app-chain-cache.Caddyfile",
		Baseline: "9a0", Path: "/v1/discover?tab=new", Needs: "appserver", Paced: appPacedRate, Quick: true,
		Probe: Probe{MinBody: 1024, Header: "Cache-Status", HeaderContains: "muejam-edge; hit"}},
	// 9v: the feed of 9a for benchViewers distinct signed-in readers, each request another
	// one: the edge stores no copy per reader (the app answers them privately), and the app
	// answers from its own cache (the page computed for everyone, filtered with the cached
	// block index), so the database sees almost nothing. Compared with 9a, the anonymous hit.
	{ID: "9v", Title: "app: discover feed (tab=new), 20,000 distinct signed-in readers, our chain", Build: "edge", Template: "app-chain-cache.Caddyfile",
		Baseline: "9a", Path: "/v1/discover?tab=new", Needs: "appserver", Viewers: benchViewers, Quick: true,
		Probe: Probe{MinBody: 1024, Header: "Cache-Control", HeaderContains: "private"}},
	{ID: "9b0", Title: "app: story page, our chain, cache off", Build: "edge", Template: "app-chain.Caddyfile",
		Baseline: "3", Path: "/v1/stories/{story}", Needs: "appserver", Paced: appPacedRate,
		Probe: Probe{MinBody: 200, Header: "RateLimit-Policy", HeaderContains: `"ip"`}},
	{ID: "9b", Title: "app: story page, our chain, cache on (hit)", Build: "edge", Template: "app-chain-cache.Caddyfile",
		Baseline: "9b0", Path: "/v1/stories/{story}", Needs: "appserver", Paced: appPacedRate,
		Probe: Probe{MinBody: 200, Header: "Cache-Status", HeaderContains: "muejam-edge; hit"}},
	{ID: "9c0", Title: "app: story whisper feed, our chain, cache off", Build: "edge", Template: "app-chain.Caddyfile",
		Baseline: "3", Path: "/v1/stories/{story}/whispers", Needs: "appserver", Paced: appPacedRate,
		Probe: Probe{MinBody: 1024, Header: "RateLimit-Policy", HeaderContains: `"ip"`}},
	{ID: "9c", Title: "app: story whisper feed, our chain, cache on (hit)", Build: "edge", Template: "app-chain-cache.Caddyfile",
		Baseline: "9c0", Path: "/v1/stories/{story}/whispers", Needs: "appserver", Paced: appPacedRate,
		Probe: Probe{MinBody: 1024, Header: "Cache-Status", HeaderContains: "muejam-edge; hit"}},
}

// benchViewers is how many distinct signed-in readers scenario 9v sends requests as.
const benchViewers = 20000

// viewerSubject is the user id of the i-th reader of a Viewers scenario (from 1).
func viewerSubject(i int) string { return "u" + strconv.Itoa(i) }

// viewersScript is the wrk Lua script of a scenario with Viewers: it reads one token a line
// from tokens, formats one request for path with each (wrk's -H fields kept, Authorization
// replaced), and sends them in turn, one Lua state per wrk thread.
func viewersScript(path, tokens string) string {
	return fmt.Sprintf(`-- written by scripts/bench: requests %[1]s as each reader of %[2]s in turn (Scenario.Viewers)
local reqs, n, i = {}, 0, 0
function init(args)
	for tok in io.lines(%[2]q) do
		local h = {}
		for k, v in pairs(wrk.headers) do h[k] = v end
		h["Authorization"] = "Bearer " .. tok
		reqs[n] = wrk.format(nil, %[1]q, h)
		n = n + 1
	end
end
function request()
	local r = reqs[i]
	i = (i + 1) %% n
	return r
end
`, path, tokens)
}

// keysScript is the wrk Lua script of a scenario with Keys: the requests for path with
// k=0…keys-1 are formatted once, in init (with wrk's Host and -H header fields), and sent in
// turn, one Lua state per wrk thread.
func keysScript(path string, keys int) string {
	return fmt.Sprintf(`-- written by scripts/bench: requests %[1]s0 … %[1]s%[2]d in turn (Scenario.Keys)
local reqs, n, i = {}, %[3]d, 0
function init(args)
	for k = 0, n - 1 do
		reqs[k] = wrk.format(nil, %[1]q .. k)
	end
end
function request()
	local r = reqs[i]
	i = (i + 1) %% n
	return r
end
`, keyPrefix(path), keys-1, keys)
}

// keyPrefix is path with the key parameter of Scenario.Keys appended, but for its value.
func keyPrefix(path string) string {
	if strings.Contains(path, "?") {
		return path + "&k="
	}
	return path + "?k="
}

// pacedRate is the open-loop rate of the latency measurements: about a third of what stock
// respond sustains on a 2-CPU machine with wrk alongside.
const pacedRate = 3000

// appPacedRate is the open-loop rate of the app-server scenarios, cache on and off alike: a
// load the app server and Postgres carry without the cache on a 2-CPU machine shared with
// wrk and the edge.
const appPacedRate = 500

//go:embed templates/*.Caddyfile
var templates embed.FS

// TemplateData is what a scenario's Caddyfile template can use.
type TemplateData struct {
	// Addr is the 127.0.0.1:PORT the site listens on.
	Addr string
	// Admin is the 127.0.0.1:PORT of Caddy's admin endpoint (or "off" in a template).
	Admin string
	// Upstream is the 127.0.0.1:PORT of the bench upstream.
	Upstream string
	// Body is the upstream's JSON body, for scenarios that answer it themselves.
	Body string
	// LogFile is a file for an access log, inside the scenario's run directory.
	LogFile string
	// DeadUpstream is a free 127.0.0.1:PORT nobody listens on (dial errors: breaker open).
	DeadUpstream string
	// Valkey is the 127.0.0.1:PORT of the Valkey the harness started, for scenarios that
	// need it; empty otherwise.
	Valkey string
	// ValkeyCluster is the addresses of the nodes of the Valkey Cluster the harness started
	// (3 primaries), separated by spaces: `valkey {{.ValkeyCluster}} { cluster on }`; empty
	// unless a scenario needs it.
	ValkeyCluster string
	// JWTSecret, JWTIssuer and JWTAudience are what the token sent by Auth scenarios is
	// signed with and claims (HS256).
	JWTSecret, JWTIssuer, JWTAudience string
	// App is the 127.0.0.1:PORT of the app server, AppMetrics its internal metrics listener,
	// and Story the ID of the seeded story the app-server scenarios request; empty unless a
	// scenario needs the app server.
	App, AppMetrics, Story string
}

// render returns the scenario's Caddyfile for d. It fails on a missing template, a field the
// template names but TemplateData lacks, and a body that cannot be a backtick-quoted token.
func (s Scenario) render(d TemplateData) (string, error) {
	if strings.Contains(d.Body, "`") {
		return "", fmt.Errorf("scenario %s: body contains a backtick", s.ID)
	}
	t, err := template.New(s.Template).Option("missingkey=error").ParseFS(templates, "templates/"+s.Template)
	if err != nil {
		return "", fmt.Errorf("scenario %s: %w", s.ID, err)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, d); err != nil {
		return "", fmt.Errorf("scenario %s: %w", s.ID, err)
	}
	return b.String(), nil
}

// selectScenarios returns the scenarios to run: those named in only (comma-separated IDs), or
// every scenario, or the quick ones. A baseline (or Compare scenario) a selected scenario refers
// to is always added, so that every ratio has its denominator from the same round.
func selectScenarios(all []Scenario, only string, quick bool) ([]Scenario, error) {
	want := map[string]bool{}
	byID := map[string]Scenario{}
	for _, s := range all {
		byID[s.ID] = s
	}
	if only != "" {
		for _, id := range strings.Split(only, ",") {
			id = strings.TrimSpace(id)
			if _, ok := byID[id]; !ok {
				return nil, fmt.Errorf("unknown scenario %q", id)
			}
			want[id] = true
		}
	} else {
		for _, s := range all {
			if s.Quick || !quick {
				want[s.ID] = true
			}
		}
	}
	for changed := true; changed; {
		changed = false
		for id := range want {
			for _, b := range append([]string{byID[id].Baseline}, byID[id].Compare...) {
				if b != "" && !want[b] {
					want[b], changed = true, true
				}
			}
		}
	}
	var out []Scenario
	for _, s := range all {
		if want[s.ID] {
			out = append(out, s)
		}
	}
	return out, nil
}
