package main

import (
	"bytes"
	"embed"
	"fmt"
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
	// Paced, when positive, also measures the scenario's latency at this many requests per
	// second, open loop, after the rounds (see pacedLoad): the figure for latency targets
	// "at load" that wrk's saturation cannot give.
	Paced int
	// Needs names a service the harness starts before the scenario: "valkey" (a valkey-server
	// or redis-server on a free loopback port, without persistence; TemplateData.Valkey), or
	// "appserver": the dev Postgres primary and replica (scripts/services.sh up), a seeded
	// bench database, bin/appserver over it (TemplateData.App, Story) and the Valkey of
	// "valkey", which the app server and the edge cache use.
	Needs string
}

// needsValkey reports whether the scenario needs the bench's own Valkey.
func (s Scenario) needsValkey() bool { return s.Needs == "valkey" || s.Needs == "appserver" }

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
	{ID: "4c", Title: "our full chain of 3 + edge_cache, hit (L1)", Build: "edge", Template: "edge-chain-hit.Caddyfile",
		Baseline: "1", Compare: []string{"1m", "3", "2m"}, Path: "/data", Auth: true,
		Probe: Probe{MinBody: 1024, Header: "Cache-Status", HeaderContains: "muejam-edge; hit"}, Quick: true},
	{ID: "6a", Title: "our limiter, local (2m + edge_rate_limit)", Build: "edge", Template: "edge-ratelimit-local.Caddyfile",
		Baseline: "2m", Compare: []string{"7"}, Path: "/data",
		Probe: Probe{MinBody: 1024, Header: "RateLimit-Policy", HeaderContains: `"bench"`}, Quick: true},
	{ID: "6h", Title: "our limiter, local, disable_headers (6a sending no header fields, as 7 on allowed requests)", Build: "edge", Template: "edge-ratelimit-local-noheaders.Caddyfile",
		Baseline: "2m", Compare: []string{"7"}, Path: "/data", Probe: Probe{MinBody: 1024}},
	{ID: "6b", Title: "our limiter, Valkey mode (2m + edge_rate_limit + valkey)", Build: "edge", Template: "edge-ratelimit-valkey.Caddyfile",
		Baseline: "2m", Compare: []string{"6a"}, Path: "/data", Needs: "valkey",
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
