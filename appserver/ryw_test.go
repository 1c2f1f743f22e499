package main

import (
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap/zaptest"

	"github.com/muejam/edge/internal/promtext"
	"github.com/muejam/edge/internal/rywtoken"
	"github.com/muejam/edge/internal/testenv"
)

const testRYWKey = "test-read-your-writes-key-0123456789abcdef"

// TestForgedTokensDoNotBypassTheAppCache runs the app server with READ_YOUR_WRITES_KEY (a
// secret reference) and checks that only a token signed with that key makes a read skip the
// app's cache: a token signed with another key, the development key, or carried by a cookie
// that is not named ryw, is ignored, and every token seen is counted by outcome.
func TestForgedTokensDoNotBypassTheAppCache(t *testing.T) {
	db := testenv.NewDatabase(t)
	env := map[string]string{
		"DATABASE_URL":          db.PrimaryURL,
		"DATABASE_REPLICA_URLS": ",", // the primary alone: every read sees every write
		"MIGRATE_ON_START":      "true",
		"VALKEY_ADDR":           testenv.NewValkey(t), // an app cache of this test's own
		"READ_YOUR_WRITES_KEY":  "env:MUEJAM_TEST_RYW_KEY",
		"MUEJAM_TEST_RYW_KEY":   testRYWKey,
	}
	base := startServer(t, env)
	testenv.WaitHTTP(t, base+"/v1/health") // it listens before it migrates, answers after

	ctx := context.Background()
	conn, err := pgx.Connect(ctx, db.PrimaryURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var id int64
	if err := conn.QueryRow(ctx, `with p as (insert into profiles (user_id, handle, display_name) values ('alice', 'alice', 'Alice'))
		insert into stories (author_id, title, chapter_seq, published_at) values ('alice', 'Before', 1, now() - interval '1 hour') returning id`).Scan(&id); err != nil {
		t.Fatal(err)
	}

	// feed returns the title of the only story of the new feed, asked with fields.
	feed := func(fields http.Header) string {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, base+"/v1/discover?tab=new", nil)
		if err != nil {
			t.Fatal(err)
		}
		maps.Copy(req.Header, fields)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var page struct {
			Data []struct{ Title string } `json:"data"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&page); err != nil || resp.StatusCode != http.StatusOK || len(page.Data) != 1 {
			t.Fatalf("GET /v1/discover: %d, %+v, %v", resp.StatusCode, page, err)
		}
		return page.Data[0].Title
	}
	sign := func(key string) string {
		k, err := rywtoken.NewKeys(key)
		if err != nil {
			t.Fatal(err)
		}
		return k.Sign(rywtoken.Claims{LSN: 1, Issued: time.Now()})
	}

	if got := feed(nil); got != "Before" {
		t.Fatalf("first read: %q", got)
	}
	// Behind the cache's back: only a read that skips the cache sees it.
	if _, err := conn.Exec(ctx, "update stories set title = 'After' where id = $1", id); err != nil {
		t.Fatal(err)
	}
	forged := sign("another-key-that-is-long-enough-0123456789")
	for name, fields := range map[string]http.Header{
		"forged header":              {rywtoken.Header: {forged}},
		"forged cookie":              {"Cookie": {"ryw=" + forged}},
		"the development key":        {rywtoken.Header: {sign(rywtoken.DevKey)}},
		"garbage":                    {rywtoken.Header: {"x"}},
		"valid token in xryw cookie": {"Cookie": {"xryw=" + sign(testRYWKey)}},
		"valid token in ryw2 cookie": {"Cookie": {"ryw2=" + sign(testRYWKey)}},
	} {
		if got := feed(fields); got != "Before" {
			t.Errorf("%s: %q, want the cached page: the token made the read skip the app cache", name, got)
		}
	}
	if got := feed(http.Header{"Cookie": {"ryw=" + sign(testRYWKey)}}); got != "After" {
		t.Errorf("a valid token: %q, want the page read afresh", got)
	}

	metrics, err := promtext.Fetch(ctx, env["APP_METRICS_ADDR"])
	if err != nil {
		t.Fatal(err)
	}
	for outcome, want := range map[string]float64{"invalid": 4, "valid": 1, "expired": 0, "future": 0} {
		if got := promtext.Sum(metrics, "muejam_db_read_your_writes_tokens_total", `outcome="`+outcome+`"`); got != want {
			t.Errorf("muejam_db_read_your_writes_tokens_total{outcome=%q} = %v, want %v", outcome, got, want)
		}
	}
}

// TestReadYourWritesKeyConfig: the key is a secret reference, resolved at start and at least
// 32 bytes; a previous key needs a current one.
func TestReadYourWritesKeyConfig(t *testing.T) {
	for name, tc := range map[string]struct {
		env     map[string]string
		wantErr string
	}{
		"plain value":         {map[string]string{"READ_YOUR_WRITES_KEY": "hunter2-hunter2-hunter2-hunter2-hunter2"}, "invalid READ_YOUR_WRITES_KEY"},
		"previous without":    {map[string]string{"READ_YOUR_WRITES_KEY_PREVIOUS": "env:OLD"}, "READ_YOUR_WRITES_KEY_PREVIOUS is set without READ_YOUR_WRITES_KEY"},
		"plain previous":      {map[string]string{"READ_YOUR_WRITES_KEY": "env:K", "READ_YOUR_WRITES_KEY_PREVIOUS": "hunter2"}, "invalid READ_YOUR_WRITES_KEY_PREVIOUS"},
		"valid with previous": {map[string]string{"READ_YOUR_WRITES_KEY": "file:/run/secrets/ryw", "READ_YOUR_WRITES_KEY_PREVIOUS": "aws-sm:muejam/x/ryw-previous"}, ""},
	} {
		cfg, err := parseConfig("appserver", nil, envMap(tc.env), io.Discard)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s: %v", name, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s: err %v, want %q", name, err, tc.wantErr)
		case err != nil && strings.Contains(err.Error(), "hunter2"):
			t.Errorf("%s: the error repeats the value: %v", name, err)
		case tc.wantErr == "" && cfg.ReadYourWritesKeyPrevious == "":
			t.Errorf("%s: previous key not read", name)
		}
	}

	ctx := context.Background()
	for name, tc := range map[string]struct {
		env  map[string]string
		want string // a key the resolved keys accept; "" for an error
	}{
		"unset: the development key": {nil, rywtoken.DevKey},
		"env reference":              {map[string]string{"READ_YOUR_WRITES_KEY": "env:K", "K": testRYWKey}, testRYWKey},
		"previous key accepted":      {map[string]string{"READ_YOUR_WRITES_KEY": "env:K", "K": testRYWKey, "READ_YOUR_WRITES_KEY_PREVIOUS": "env:OLD", "OLD": rywtoken.DevKey + "-old"}, rywtoken.DevKey + "-old"},
		"too short":                  {map[string]string{"READ_YOUR_WRITES_KEY": "env:K", "K": "short"}, ""},
		"unresolvable":               {map[string]string{"READ_YOUR_WRITES_KEY": "env:UNSET"}, ""},
	} {
		cfg, err := parseConfig("appserver", nil, envMap(tc.env), io.Discard)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		keys, err := tokenKeys(ctx, cfg, zaptest.NewLogger(t))
		if tc.want == "" {
			if err == nil {
				t.Errorf("%s: keys resolved", name)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		signer, _ := rywtoken.NewKeys(tc.want)
		if _, out := keys.Verify(signer.Sign(rywtoken.Claims{LSN: 1, Issued: time.Now()}), time.Minute, time.Now()); out != rywtoken.Valid {
			t.Errorf("%s: a token of the expected key: %v", name, out)
		}
	}
}
