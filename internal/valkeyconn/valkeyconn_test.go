package valkeyconn_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/valkey-io/valkey-go"

	"github.com/muejam/edge/internal/breaker"
	"github.com/muejam/edge/internal/panics"
	"github.com/muejam/edge/internal/testenv"
	"github.com/muejam/edge/internal/valkeyconn"
)

func TestConfigJSON(t *testing.T) {
	tests := []struct {
		in   string
		want valkeyconn.Config
	}{
		{`"127.0.0.1:6379"`, valkeyconn.Config{Addresses: []string{"127.0.0.1:6379"}}},
		{`"10.0.0.1:6379,10.0.0.2:6379"`, valkeyconn.Config{Addresses: []string{"10.0.0.1:6379", "10.0.0.2:6379"}}},
		{`{"addresses":["a:1","b:2"],"cluster":true,"username":"edge","password":"{env.P}","tls":{"ca_file":"/ca.pem"}}`,
			valkeyconn.Config{Addresses: []string{"a:1", "b:2"}, Cluster: true, Username: "edge", Password: "{env.P}",
				TLS: &valkeyconn.TLS{CAFile: "/ca.pem"}}},
	}
	for _, tt := range tests {
		var got valkeyconn.Config
		if err := json.Unmarshal([]byte(tt.in), &got); err != nil {
			t.Fatalf("%s: %v", tt.in, err)
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: got %+v, want %+v", tt.in, got, tt.want)
		}
	}
	if err := json.Unmarshal([]byte(`{"addresses":3}`), new(valkeyconn.Config)); err == nil {
		t.Error("a number of addresses was accepted")
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []valkeyconn.Config{
		{},
		{Addresses: []string{"no-port"}},
		{Addresses: []string{":6379"}},
		{Addresses: []string{"127.0.0.1:6379"}, TLS: &valkeyconn.TLS{CAFile: "/does/not/exist.pem"}},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
	if _, err := valkeyconn.New(valkeyconn.Config{Addresses: []string{"x"}}, valkeyconn.Options{Name: "x"}); err == nil {
		t.Error("New accepted an invalid address")
	}
}

func TestKeyHidesThePassword(t *testing.T) {
	c := valkeyconn.Config{Addresses: []string{"a:1"}, Password: "hunter2-secret"}
	for _, s := range []string{c.Key(), c.String()} {
		if strings.Contains(s, "hunter2") {
			t.Errorf("%q reveals the password", s)
		}
	}
	other := c
	other.Password = "another-secret"
	if c.Key() == other.Key() && len(c.Password) != len(other.Password) {
		t.Error("different passwords of different lengths share a key")
	}
}

// connect makes a Conn and waits up to 10 s for its first connection.
func connect(t *testing.T, cfg valkeyconn.Config) *valkeyconn.Conn {
	t.Helper()
	c, err := valkeyconn.New(cfg, valkeyconn.Options{Name: t.Name(), OpenFor: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	deadline := time.Now().Add(10 * time.Second)
	for c.Client() == nil {
		if time.Now().After(deadline) {
			t.Fatalf("no connection to %s within 10s", cfg)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return c
}

func setGet(t *testing.T, c *valkeyconn.Conn, key string) {
	t.Helper()
	var got string
	_, err := c.Call(context.Background(), 2*time.Second, "test", func(ctx context.Context, cl valkey.Client) error {
		if err := cl.Do(ctx, cl.B().Set().Key(key).Value("v-"+key).Px(time.Minute).Build()).Error(); err != nil {
			return err
		}
		var err error
		got, err = cl.Do(ctx, cl.B().Get().Key(key).Build()).ToString()
		return err
	})
	if err != nil || got != "v-"+key {
		t.Fatalf("SET/GET %s: %q, %v", key, got, err)
	}
}

func TestStandaloneAndCluster(t *testing.T) {
	t.Run("standalone", func(t *testing.T) {
		c := connect(t, valkeyconn.Config{Addresses: []string{testenv.ValkeyAddr}})
		if c.IsCluster() {
			t.Error("a standalone server was taken for a cluster")
		}
		setGet(t, c, "muejam:test:valkeyconn")
	})
	t.Run("cluster discovered", func(t *testing.T) {
		c := connect(t, valkeyconn.Config{Addresses: testenv.RequireValkeyCluster(t)[:1]})
		if !c.IsCluster() {
			t.Fatal("a cluster node was not used as a cluster")
		}
		// Keys of many slots through one client: redirects are followed.
		for i := range 50 {
			setGet(t, c, fmt.Sprintf("muejam:test:valkeyconn:%d", i))
		}
	})
	t.Run("cluster required", func(t *testing.T) {
		c := connect(t, valkeyconn.Config{Addresses: testenv.RequireValkeyCluster(t), Cluster: true})
		if !c.IsCluster() {
			t.Fatal("not a cluster client")
		}
		setGet(t, c, "muejam:test:valkeyconn:required")
	})
	t.Run("cluster required of a standalone server", func(t *testing.T) {
		cfg := valkeyconn.Config{Addresses: []string{testenv.ValkeyAddr}, Cluster: true}
		if cl, err := cfg.NewClient(time.Second); err == nil {
			cl.Close()
			t.Fatal("a standalone server was accepted as a cluster")
		}
		c, err := valkeyconn.New(cfg, valkeyconn.Options{Name: t.Name()})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, err = c.Call(context.Background(), time.Second, "test", func(context.Context, valkey.Client) error { return nil })
		if !errors.Is(err, valkeyconn.ErrNotConnected) {
			t.Errorf("call on a mismatched server: %v, want ErrNotConnected", err)
		}
	})
}

// TestCallRecoversCrossSlotPanic: valkey-go's builder panics on a multi-key command whose keys
// are in different cluster slots; Call turns the panic into an error and counts it.
func TestCallRecoversCrossSlotPanic(t *testing.T) {
	c := connect(t, valkeyconn.Config{Addresses: testenv.RequireValkeyCluster(t), Cluster: true})
	before := testutil.ToFloat64(panics.Total.WithLabelValues("valkeyconn.test"))
	_, err := c.Call(context.Background(), time.Second, "valkeyconn.test", func(ctx context.Context, cl valkey.Client) error {
		return cl.Do(ctx, cl.B().Mget().Key("a", "b", "c", "d").Build()).Error()
	})
	var pe *panics.Error
	if !errors.As(err, &pe) {
		t.Fatalf("cross-slot MGET: %v, want a recovered panic", err)
	}
	if got := testutil.ToFloat64(panics.Total.WithLabelValues("valkeyconn.test")) - before; got != 1 {
		t.Errorf("panics counted: %v, want 1", got)
	}
	// Hash tags put the keys in one slot: the same command works.
	_, err = c.Call(context.Background(), time.Second, "valkeyconn.test", func(ctx context.Context, cl valkey.Client) error {
		return cl.Do(ctx, cl.B().Mget().Key("{t}a", "{t}b").Build()).Error()
	})
	if err != nil {
		t.Errorf("MGET in one slot: %v", err)
	}
}

// TestBreakerStopsCallsToADeadServer: three failures open the breaker, and calls then fail
// at once without reaching the server; once the server answers again, the probe closes the
// breaker within about its interval.
func TestBreakerStopsCallsToADeadServer(t *testing.T) {
	v := testenv.StartValkey(t)
	c, err := valkeyconn.New(valkeyconn.Config{Addresses: []string{v.Addr}}, valkeyconn.Options{Name: t.Name(), OpenFor: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for c.Client() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	v.Stop(t)
	ping := func(ctx context.Context, cl valkey.Client) error { return cl.Do(ctx, cl.B().Ping().Build()).Error() }
	for range 3 {
		if _, err := c.Call(context.Background(), 200*time.Millisecond, "test", ping); err == nil {
			t.Fatal("a call to a dead server succeeded")
		}
	}
	if c.Available() {
		t.Error("available after three failures")
	}
	if _, err := c.Call(context.Background(), time.Second, "test", ping); !errors.Is(err, breaker.ErrOpen) {
		t.Errorf("fourth call: %v, want breaker.ErrOpen", err)
	}

	// Back: the probe closes the breaker long before its open period (a minute) ends.
	v.Start(t)
	back := time.Now()
	for !c.Available() {
		if time.Since(back) > 10*time.Second {
			t.Fatal("breaker still open 10s after Valkey returned")
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("breaker closed %v after Valkey answered again", time.Since(back).Round(time.Millisecond))
	if _, err := c.Call(context.Background(), time.Second, "test", ping); err != nil {
		t.Errorf("call after the return: %v", err)
	}

	// A breaker an operator forced open stays open while Valkey answers.
	c.Breaker.ForceOpen()
	time.Sleep(300 * time.Millisecond)
	if c.Available() {
		t.Error("the probe closed a breaker forced open")
	}
}

// TestTLSAndAuth: a server that speaks only TLS and requires an ACL user, as ElastiCache
// with in-transit encryption and AUTH: the right CA and credentials connect; a wrong
// password or no TLS does not.
func TestTLSAndAuth(t *testing.T) {
	ca := testenv.NewCA(t)
	addr := testenv.StartValkeyTLS(t, ca, "edge", "s3cret-token")
	good := valkeyconn.Config{Addresses: []string{addr}, Username: "edge", Password: "s3cret-token",
		TLS: &valkeyconn.TLS{CAFile: ca.CertFile}}
	c := connect(t, good)
	setGet(t, c, "muejam:test:tls")

	for name, cfg := range map[string]valkeyconn.Config{
		"wrong password": {Addresses: []string{addr}, Username: "edge", Password: "nope", TLS: good.TLS},
		"no tls":         {Addresses: []string{addr}, Username: "edge", Password: "s3cret-token"},
		"unknown ca":     {Addresses: []string{addr}, Username: "edge", Password: "s3cret-token", TLS: &valkeyconn.TLS{CAFile: testenv.NewCA(t).CertFile}},
	} {
		if cl, err := cfg.NewClient(time.Second); err == nil {
			err = cl.Do(context.Background(), cl.B().Ping().Build()).Error()
			cl.Close()
			if err == nil {
				t.Errorf("%s: connected and PING answered", name)
			}
		}
	}
}
