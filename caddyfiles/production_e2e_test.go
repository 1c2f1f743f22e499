package caddyfiles_test

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/muejam/edge/internal/breaker"
	"github.com/muejam/edge/internal/promtext"
	"github.com/muejam/edge/internal/testenv"
)

// prodStack is production as deployed, on one machine: bin/appserver on a fresh migrated
// database and a private Valkey Cluster, two bin/caddy nodes running production.Caddyfile
// as it is (configured by environment only, as the ECS task is), and in front of them a
// front tier that plays CloudFront and the ALB, serving TLS with a CA the test mints.
type prodStack struct {
	front    *frontTier
	nodes    []edgeNode
	signer   *signer
	client   *http.Client // trusts the test CA; talks to the front tier
	cdnIP    string       // the CloudFront address the ALB sees
	secret   string       // CDN_ORIGIN_SECRET
	appAddr  string
	viewerID atomic.Uint32 // hands out distinct viewer addresses

	primaryURL, replicaURL string // the database

	app    *testenv.Process // bin/appserver
	apps   []appInstance    // every app server, s.app the first
	valkey *testenv.Valkey  // with prodOptions.standaloneValkey, else nil
	db     *testenv.Cluster // with prodOptions.privateDB, else nil
}

// prodOptions change what startProdStack runs on; the zero value is the deployed shape.
type prodOptions struct {
	// standaloneValkey: one private Valkey server (prodStack.valkey), which a test can Stop
	// and Start, instead of the private Valkey Cluster.
	standaloneValkey bool
	// privateDB: a private PostgreSQL primary and replica (prodStack.db), which a test can
	// stop and start, instead of a fresh database on the shared services.
	privateDB bool
	// apps: how many app servers (ECS tasks of the app service) the edge nodes balance
	// over, sharing the database and Valkey; 0 is one.
	apps int
}

// appInstance is one bin/appserver of the stack: its API and internal metrics addresses.
type appInstance struct {
	addr, metrics string
	proc          *testenv.Process
}

// edgeNode is one bin/caddy of the stack.
type edgeNode struct {
	url, admin string // http://127.0.0.1:PORT of traffic and of the admin API
	metrics    string // 127.0.0.1:PORT of the metrics listener
	proc       *testenv.Process
}

func startProdStack(t *testing.T, opts ...prodOptions) *prodStack {
	t.Helper()
	var o prodOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	s := &prodStack{appAddr: testenv.FreeAddr(t), secret: randomHex(t, 24), cdnIP: "130.176.88.17"}
	if o.privateDB {
		s.db = testenv.NewCluster(t)
		s.primaryURL, s.replicaURL = s.db.PrimaryURL, s.db.ReplicaURL
	} else {
		db := testenv.NewDatabase(t)
		s.primaryURL, s.replicaURL = db.PrimaryURL, db.ReplicaURL
	}
	primaryURL, replicaURL := s.primaryURL, s.replicaURL
	// The key of the read-your-writes tokens, as ECS gives it: to the app server by
	// reference (aws-sm: there, env: here), to the edge as its value.
	rywKey := randomHex(t, 32)
	seeds, cluster := "", "on"
	if o.standaloneValkey {
		s.valkey = testenv.StartValkey(t)
		seeds, cluster = s.valkey.Addr, "off"
	} else {
		seeds = strings.Join(testenv.StartStableValkeyCluster(t).Seeds(), ",")
	}
	appserver := testenv.Binary(t, "appserver")
	if out, err := exec.Command(appserver, "migrate", "-database-url", primaryURL).CombinedOutput(); err != nil {
		t.Fatalf("appserver migrate: %v\n%s", err, out)
	}
	upstreams := []string{s.appAddr}
	for i := range max(o.apps, 1) {
		a := appInstance{addr: s.appAddr, metrics: testenv.FreeAddr(t)}
		if i > 0 {
			a.addr = testenv.FreeAddr(t)
			upstreams = append(upstreams, a.addr)
		}
		a.proc = testenv.Start(t, []string{
			"APP_ADDR=" + a.addr,
			"APP_METRICS_ADDR=" + a.metrics,
			"DATABASE_URL=" + primaryURL,
			"DATABASE_REPLICA_URLS=" + replicaURL,
			"VALKEY_ADDR=" + seeds,
			"VALKEY_CLUSTER=" + cluster,
			"READ_YOUR_WRITES_KEY=env:MUEJAM_E2E_READ_YOUR_WRITES_KEY",
			"MUEJAM_E2E_READ_YOUR_WRITES_KEY=" + rywKey,
		}, appserver)
		testenv.WaitHTTP(t, "http://"+a.addr+"/v1/health")
		s.apps = append(s.apps, a)
	}
	s.app = s.apps[0].proc

	// The identity provider's key set.
	s.signer = newSigner("https://id.muejam.test/")
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(s.signer.JWKS())
	}))
	t.Cleanup(jwks.Close)

	caddy := testenv.Binary(t, "caddy")
	for range 2 {
		port, metrics := freePort(t), freePort(t)
		n := edgeNode{url: "http://127.0.0.1:" + port, admin: "127.0.0.1:" + freePort(t), metrics: "127.0.0.1:" + metrics}
		n.proc = testenv.Start(t, []string{
			"EDGE_ADMIN_ADDR=" + n.admin,
			"EDGE_BIND=127.0.0.1",
			"EDGE_PORT=" + port,
			"EDGE_METRICS_BIND=127.0.0.1",
			"EDGE_METRICS_PORT=" + metrics,
			// The ALB's subnet: here, the loopback network the front tier connects from.
			"EDGE_TRUSTED_PROXIES=127.0.0.0/8",
			"CDN_ORIGIN_SECRET=" + s.secret,
			"JWKS_URL=" + jwks.URL + "/jwks.json",
			"JWT_ISSUER=" + s.signer.issuer,
			"VALKEY_ADDR=" + seeds,
			"VALKEY_CLUSTER=" + cluster,
			"VALKEY_TLS=off",
			"EDGE_EXPECTED_NODES=2",
			// Valkey answers in microseconds here too, but this machine runs the whole stack
			// and its load on 2 cores: a call can wait for a core longer than production's
			// 25ms. The limits are exact while every decision is Valkey's.
			"EDGE_RATE_LIMIT_TIMEOUT=500ms",
			"APP_UPSTREAMS=" + strings.Join(upstreams, " "),
			"EDGE_CACHE_L1=64MiB",
			"PII_PSEUDONYM_KEY=" + randomHex(t, 16),
			"READ_YOUR_WRITES_KEY=" + rywKey,
		}, caddy, "run", "--config", "caddyfiles/production.Caddyfile", "--adapter", "caddyfile")
		testenv.WaitHTTP(t, "http://"+n.admin+"/config/")
		testenv.WaitHTTP(t, n.url+"/v1/health")
		s.nodes = append(s.nodes, n)
	}

	ca := testenv.NewCA(t)
	s.front = newFrontTier(t, ca, s.nodes, s.secret, s.cdnIP)
	pool := x509.NewCertPool()
	pem, err := os.ReadFile(ca.CertFile)
	if err != nil || !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("reading the test CA: %v", err)
	}
	s.client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost: 256,
	}}
	return s
}

func freePort(t *testing.T) string {
	t.Helper()
	_, port, _ := net.SplitHostPort(testenv.FreeAddr(t))
	return port
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// viewer returns a new viewer address, as CloudFront writes it (ip:port), in a block no
// earlier run used: IPv4 from 198.18.0.0/15 (benchmarking), IPv6 from 2001:db8::/32.
func (s *prodStack) viewer(v6 bool) string {
	n := s.viewerID.Add(1)
	if v6 {
		return fmt.Sprintf("2001:db8:%x:%x::%x:%d", randUint16(), n, randUint16(), 40000+n%20000)
	}
	return fmt.Sprintf("198.%d.%d.%d:%d", 18+randUint16()%2, randUint16()%256, n%250+1, 40000+n%20000)
}

func randUint16() uint16 {
	n, _ := rand.Int(rand.Reader, big.NewInt(1<<16))
	return uint16(n.Int64())
}

// frontTier plays CloudFront and the ALB in front of the edge nodes: it terminates TLS,
// sets CloudFront-Viewer-Address to the viewer's address and adds the secret origin header
// (as CloudFront's origin request policy and custom header do), appends the viewer and then
// CloudFront's own address to X-Forwarded-For (CloudFront, then the ALB), and round-robins
// the nodes. A test names the viewer a request comes from in X-Test-Viewer (all test
// clients share 127.0.0.1); the front tier strips it.
type frontTier struct {
	url  string
	next atomic.Uint64
	// retried counts requests sent again on a new connection after the one they were
	// sent on failed (Go's Transport does that for idempotent requests).
	retried atomic.Int64
}

func newFrontTier(t *testing.T, ca *testenv.CA, nodes []edgeNode, secret, cdnIP string) *frontTier {
	t.Helper()
	certFile, keyFile := ca.Issue(t, "127.0.0.1", "muejam.test")
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	f := &frontTier{}
	targets := make([]*url.URL, len(nodes))
	for i, n := range nodes {
		targets[i], _ = url.Parse(n.url)
	}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			target := targets[f.next.Add(1)%uint64(len(targets))]
			pr.SetURL(target)
			pr.Out.Host = "muejam.test"
			viewer := pr.In.Header.Get("X-Test-Viewer")
			if viewer == "" {
				viewer = pr.In.RemoteAddr
			}
			pr.Out.Header.Del("X-Test-Viewer")
			host := viewer
			if i := strings.LastIndexByte(viewer, ':'); i > 0 {
				host = strings.Trim(viewer[:i], "[]")
			}
			// CloudFront: the viewer's address, the secret; any of the viewer's own values
			// of these fields are replaced.
			pr.Out.Header.Set("CloudFront-Viewer-Address", viewer)
			pr.Out.Header.Set("X-Origin-Verify", secret)
			// X-Forwarded-For: what the viewer sent, the viewer (CloudFront), CloudFront (ALB).
			xff := append(pr.In.Header.Values("X-Forwarded-For"), host, cdnIP)
			pr.Out.Header.Set("X-Forwarded-For", strings.Join(xff, ", "))
			pr.Out.Header.Set("X-Forwarded-Proto", "https")
			tr := &frontTrace{}
			ctx := httptrace.WithClientTrace(pr.Out.Context(), &httptrace.ClientTrace{
				GotConn: func(info httptrace.GotConnInfo) {
					tr.reused = info.Reused
					if tr.conns++; tr.conns > 1 {
						f.retried.Add(1)
					}
				},
				GotFirstResponseByte: func() { tr.responded.Store(true) },
			})
			pr.Out = pr.Out.WithContext(context.WithValue(ctx, frontTraceKey{}, tr))
		},
		Transport: &http.Transport{MaxIdleConnsPerHost: 256},
		// As the ALB does, a bare 502 for a request the edge gave no answer to; for the
		// tests, X-Test-Front-Error says how it failed.
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			tr, _ := r.Context().Value(frontTraceKey{}).(*frontTrace)
			w.Header().Set(frontErrorHeader, tr.describe(err))
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	srv := httptest.NewUnstartedServer(proxy)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	f.url = srv.URL
	return f
}

// frontErrorHeader names the front tier's failure in its 502s: "closed under request: …"
// for a request sent on a reused keep-alive connection that the edge closed before any byte
// of an answer (the race of a request with the close of an idle connection, which a POST
// cannot survive: RFC 9112 §9.3.1), "new connection dropped: …" for one sent on a new
// connection that the edge closed or reset before any byte of an answer (on a reload, a
// connection the old server's socket took just before it closed: docs/operators.md,
// "Reloads"), "failed: …" for anything else.
const frontErrorHeader = "X-Test-Front-Error"

// frontTrace is what the front tier saw of one request to a node.
type frontTrace struct {
	conns     int  // connections the request was sent on
	reused    bool // the last of them had carried requests before
	responded atomic.Bool
}

type frontTraceKey struct{}

// describe classifies err, the failure of the request tr traced, for frontErrorHeader.
func (tr *frontTrace) describe(err error) string {
	switch {
	case tr == nil || tr.responded.Load() || !connClosed(err):
		return "failed: " + err.Error()
	case tr.reused:
		return "closed under request: " + err.Error()
	default:
		return "new connection dropped: " + err.Error()
	}
}

// connClosed reports whether err is the peer closing the connection: EOF, reset, broken
// pipe, or Go's Transport noticing the server closed an idle connection it was using.
func connClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		strings.Contains(err.Error(), "server closed idle connection")
}

// wrongSecret returns secret with its last character changed.
func wrongSecret(secret string) string {
	last := byte('0')
	if secret[len(secret)-1] == last {
		last = '1'
	}
	return secret[:len(secret)-1] + string(last)
}

// result is one answer through the stack.
type result struct {
	status int
	header http.Header
	body   []byte
	err    error
}

// call sends a request through the front tier as viewer, with a bearer token when not empty.
func (s *prodStack) call(method, path, viewer, token, body string) result {
	return s.send(reader{viewer: viewer, token: token}, method, path, body)
}

func do(c *http.Client, req *http.Request) result {
	resp, err := c.Do(req)
	if err != nil {
		return result{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return result{status: resp.StatusCode, header: resp.Header, body: b, err: err}
}

// counts tallies statuses (0 for a transport error).
type counts struct {
	mu sync.Mutex
	m  map[int]int
}

func (c *counts) add(r result) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[int]int{}
	}
	if r.err != nil {
		c.m[0]++
		return
	}
	c.m[r.status]++
}

func (c *counts) get(status int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[status]
}

func (c *counts) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return fmt.Sprint(c.m)
}

// flood sends n requests of path as viewer, conc at a time.
func (s *prodStack) flood(n, conc int, path, viewer, token string) *counts {
	var c counts
	var wg sync.WaitGroup
	var left atomic.Int64
	left.Store(int64(n))
	for range conc {
		wg.Go(func() {
			for left.Add(-1) >= 0 {
				c.add(s.call("GET", path, viewer, token, ""))
			}
		})
	}
	wg.Wait()
	return &c
}

// healthChecks probes /v1/health on every node directly, as the ALB's target health checks
// do (no CloudFront, no secret), every 100ms until stop is closed.
func (s *prodStack) healthChecks(stop <-chan struct{}) *counts {
	var c counts
	for _, n := range s.nodes {
		go func() {
			t := time.NewTicker(100 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
				}
				req, _ := http.NewRequest("GET", n.url+"/v1/health", nil)
				c.add(do(http.DefaultClient, req))
			}
		}()
	}
	return &c
}

// breakerFailures returns the failures every breaker of every node has counted.
func (s *prodStack) breakerFailures(t *testing.T) int {
	t.Helper()
	total := 0
	for _, n := range s.nodes {
		resp, err := http.Get("http://" + n.admin + "/edge/breakers")
		if err != nil {
			t.Fatal(err)
		}
		var list struct {
			Breakers []breaker.Snapshot `json:"breakers"`
		}
		err = json.NewDecoder(resp.Body).Decode(&list)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range list.Breakers {
			total += int(b.Failures) + b.Trips
		}
	}
	return total
}

// TestProductionPath runs production.Caddyfile as deployed (two nodes sharing a Valkey
// Cluster, behind CloudFront and an ALB, TLS to the viewer) and checks what a busy first day
// would show: a flooding anonymous viewer is limited while another viewer and the load
// balancer's health checks are not; viewers behind one CloudFront address keep separate
// quotas (an IPv6 /64 is one); requests that skip the distribution are refused; text the
// database cannot store is a 400 that moves no breaker; and 100 viewers over one limit
// window, reading and writing through both nodes, get exactly their limits.
func TestProductionPath(t *testing.T) {
	s := startProdStack(t)

	t.Run("flood", func(t *testing.T) {
		stop := make(chan struct{})
		health := s.healthChecks(stop)
		flooder, bystander := s.viewer(false), s.viewer(false)
		done := make(chan *counts)
		go func() { done <- s.flood(1100, 16, "/v1/discover", flooder, "") }()
		var by counts
		for range 20 {
			by.add(s.call("GET", "/v1/discover", bystander, "", ""))
			time.Sleep(20 * time.Millisecond)
		}
		fl := <-done
		close(stop)
		time.Sleep(150 * time.Millisecond)
		t.Logf("flooder (1,100 requests): %v; bystander: %v; health checks: %v", fl, &by, health)
		if fl.get(200) != 60 || fl.get(429) != 1040 {
			t.Errorf("flooder: %v, want exactly 60 admitted (the anonymous per-address limit) and 1,040 refused", fl)
		}
		if by.get(200) != 20 {
			t.Errorf("bystander behind the same CDN address: %v, want 20 × 200", &by)
		}
		if health.get(200) == 0 || health.String() != fmt.Sprint(map[int]int{200: health.get(200)}) {
			t.Errorf("load balancer health checks: %v, want only 200s", health)
		}
	})

	t.Run("viewers behind one CDN address", func(t *testing.T) {
		a, b := s.viewer(false), s.viewer(false)
		ca, cb := s.flood(70, 4, "/v1/discover", a, ""), s.flood(70, 4, "/v1/discover", b, "")
		if ca.get(200) != 60 || cb.get(200) != 60 {
			t.Errorf("two viewers, one CloudFront address: %v and %v, want 60 admitted each", ca, cb)
		}
		// Two addresses of one IPv6 /64 are one subscriber; another /64 is another.
		v6 := s.viewer(true)
		prefix := v6[:strings.Index(v6, "::")]
		c1 := s.flood(40, 4, "/v1/discover", prefix+"::1:40001", "")
		c2 := s.flood(40, 4, "/v1/discover", prefix+"::2:40002", "")
		c3 := s.flood(10, 2, "/v1/discover", s.viewer(true), "")
		if c1.get(200)+c2.get(200) != 60 || c3.get(200) != 10 {
			t.Errorf("IPv6: one /64 got %v + %v (want 60 together), another /64 %v (want 10)", c1, c2, c3)
		}
	})

	t.Run("bypassing the CDN", func(t *testing.T) {
		for _, n := range s.nodes {
			for name, hdr := range map[string]map[string]string{
				"plain":                 {},
				"forged viewer address": {"CloudFront-Viewer-Address": "198.51.100.1:1", "X-Forwarded-For": "198.51.100.1"},
				"wrong secret":          {"X-Origin-Verify": wrongSecret(s.secret), "CloudFront-Viewer-Address": "198.51.100.1:1"},
			} {
				req, _ := http.NewRequest("GET", n.url+"/v1/discover", nil)
				for k, v := range hdr {
					req.Header.Set(k, v)
				}
				r := do(http.DefaultClient, req)
				if r.err != nil || r.status != http.StatusForbidden || r.header.Get("Content-Type") != "application/problem+json" {
					t.Errorf("%s straight to %s: %d %v %s, want 403 problem JSON", name, n.url, r.status, r.err, r.body)
				}
			}
		}
	})

	t.Run("unstorable text", func(t *testing.T) {
		before := s.breakerFailures(t)
		token := s.signer.token("nul-writer", 10*time.Minute)
		viewer := s.viewer(false)
		for _, body := range []string{
			`{"body":"hello\u0000world"}`,
			"{\"body\":\"bad \xff\xfe utf-8\"}",
		} {
			for range 4 { // under the whispers limit (10 a minute): every one reaches the app
				r := s.call("POST", "/v1/whispers", viewer, token, body)
				if r.err != nil || r.status != http.StatusBadRequest || !strings.Contains(string(r.body), `"error"`) {
					t.Fatalf("POST /v1/whispers %q: %d %v %s, want 400 with a JSON error", body, r.status, r.err, r.body)
				}
			}
		}
		if after := s.breakerFailures(t); after != before {
			t.Errorf("breaker failures and trips went from %d to %d on client errors", before, after)
		}
	})

	t.Run("100 viewers over one window", func(t *testing.T) {
		before := s.fallbacks(t)
		exactLimits(t, s, func() float64 { return s.fallbacks(t) - before })
	})

	// The access logs (flushed by a clean stop) hold neither the origin secret nor a panic.
	for i, n := range s.nodes {
		n.proc.Stop(t)
		out := n.proc.Output()
		if strings.Contains(out, s.secret) {
			t.Errorf("node %d logged the CDN origin secret", i)
		}
		if strings.Contains(out, "panic") {
			t.Errorf("node %d logged a panic", i)
		}
		if !strings.Contains(out, `"X-Origin-Verify":["[REDACTED`) {
			t.Errorf("node %d: no access log line shows the origin secret header redacted", i)
		}
	}
}

// fallbacks returns the limiter decisions both nodes took on local windows because Valkey did
// not answer within valkey_timeout.
func (s *prodStack) fallbacks(t *testing.T) float64 {
	t.Helper()
	var n float64
	for _, node := range s.nodes {
		text, err := promtext.Fetch(context.Background(), node.metrics)
		if err != nil {
			t.Fatal(err)
		}
		n += promtext.Sum(text, "muejam_edge_rate_limit_fallbacks_total", "")
	}
	return n
}

// exactLimits runs 50 signed-in and 50 anonymous viewers for 50 s (inside one 1-minute limit
// window) through both nodes: each signed-in viewer sends 130 reads and 15 whispers, each
// anonymous viewer 90 reads. Every signed-in viewer must get exactly the user limit (100)
// admitted, at most 10 whispers (the whispers limit), and every anonymous viewer exactly 60.
func exactLimits(t *testing.T, s *prodStack, fallbacks func() float64) {
	const (
		users, anons          = 50, 50
		userReads, userWrites = 130, 15
		anonReads             = 90
		span                  = 50 * time.Second
		userLimit, anonLimit  = 100, 60
		whisperLimit          = 10
	)
	type tally struct{ admitted, refused, whispers, other int }
	tallies := make([]tally, users+anons)
	run := randomHex(t, 4)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range users + anons {
		wg.Go(func() {
			viewer := s.viewer(i%2 == 0)
			var token string
			reqs := make([]string, 0, userReads+userWrites)
			if i < users {
				token = s.signer.token(fmt.Sprintf("reader-%s-%d", run, i), 10*time.Minute)
				for range userReads {
					reqs = append(reqs, "GET")
				}
				for range userWrites {
					reqs = append(reqs, "POST")
				}
			} else {
				for range anonReads {
					reqs = append(reqs, "GET")
				}
			}
			shuffle(reqs)
			pause := span / time.Duration(len(reqs))
			tl := &tallies[i]
			for j, m := range reqs {
				time.Sleep(time.Until(start.Add(time.Duration(j) * pause)))
				var r result
				if m == "GET" {
					r = s.call("GET", "/v1/discover", viewer, token, "")
				} else {
					r = s.call("POST", "/v1/whispers", viewer, token, fmt.Sprintf(`{"body":"whisper %d of %d"}`, j, i))
				}
				switch {
				case r.err == nil && r.status == http.StatusTooManyRequests:
					tl.refused++
				case r.err == nil && (r.status == http.StatusOK || r.status == http.StatusCreated):
					tl.admitted++
					if m == "POST" {
						tl.whispers++
					}
				default:
					tl.other++
					t.Errorf("viewer %d %s: %d %v %s", i, m, r.status, r.err, r.body)
				}
			}
		})
	}
	wg.Wait()
	if took := time.Since(start); took > time.Minute {
		t.Errorf("the run took %v, longer than the limit window: the exactness check does not apply", took)
	}
	// Exact while every decision is Valkey's. A decision taken on a node's local windows (a
	// Valkey call past valkey_timeout on a starved machine) may admit one request more.
	fb := int(fallbacks())
	var admitted, refused, whispers int
	for i, tl := range tallies {
		admitted, refused, whispers = admitted+tl.admitted, refused+tl.refused, whispers+tl.whispers
		limit := userLimit
		if i >= users {
			limit = anonLimit
		}
		if tl.admitted < limit || tl.admitted > limit+fb || (i < users && tl.whispers > whisperLimit+fb) {
			t.Errorf("viewer %d: %+v, want exactly %d admitted (at most %d more: %d local decisions) and at most %d whispers",
				i, tl, limit, fb, fb, whisperLimit)
		}
	}
	t.Logf("100 viewers over %v: %d admitted (%d whispers), %d refused; %d decisions on local windows",
		time.Since(start).Round(time.Second), admitted, whispers, refused, fb)
}

// shuffle puts xs in a random order.
func shuffle(xs []string) {
	for i := len(xs) - 1; i > 0; i-- {
		n, _ := rand.Int(rand.Reader, big.NewInt(int64(i+1)))
		j := int(n.Int64())
		xs[i], xs[j] = xs[j], xs[i]
	}
}
