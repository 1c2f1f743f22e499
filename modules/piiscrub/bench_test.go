package piiscrub

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/logging"
)

// logEntry is an entry and its fields, as Caddy's access logger writes them.
type logEntry struct {
	ent    zapcore.Entry
	fields []zapcore.Field
}

// cleanEntries returns the clean entry alone: every line of the stream is the same.
func cleanEntries() []logEntry {
	ent, fields := cleanEntry()
	return []logEntry{{ent, fields}}
}

// variedEntries returns a stream of entries as real traffic varies them: a public client
// address (masked on every line) from a few hundred clients on changing ports, a request
// ID that never repeats, a URI among a few thousand, and user agents among a few.
func variedEntries() []logEntry {
	r := rand.New(rand.NewPCG(1, 2))
	agents := []string{
		"Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
		"muejam-android/3.4.1 okhttp/4.12.0",
	}
	es := make([]logEntry, 512)
	for i := range es {
		ent, fields := cleanEntry()
		req := fields[0].Interface.(caddyhttp.LoggableHTTPRequest)
		ip := fmt.Sprintf("198.51.%d.%d", r.IntN(2)+100, r.IntN(200)+1)
		req.RemoteAddr = fmt.Sprintf("%s:%d", ip, 32768+r.IntN(28000))
		uri := fmt.Sprintf("/v1/stories/%d/chapters?limit=20&cursor=eyJpZCI6%d", r.IntN(2000), r.IntN(9))
		req.Request = req.WithContext(context.WithValue(req.Context(), caddyhttp.VarsCtxKey,
			map[string]any{caddyhttp.ClientIPVarKey: ip}))
		req.RequestURI = uri
		req.Header = http.Header{
			"User-Agent":   {agents[r.IntN(len(agents))]},
			"Accept":       {"application/json"},
			"X-Request-Id": {fmt.Sprintf("%08x-%04x-4%03x-a%03x-%012x", r.Uint32(), r.IntN(1<<16), r.IntN(1<<12), r.IntN(1<<12), r.Uint64()>>16)},
		}
		fields[0] = zap.Object("request", req)
		fields[4] = zap.Int("size", r.IntN(50000))
		es[i] = logEntry{ent, fields}
	}
	return es
}

// benchEncode encodes the stream of entries with enc, as Caddy's access logger does.
func benchEncode(b *testing.B, enc zapcore.Encoder, entries []logEntry) {
	plain, size := plainJSON(b), 0
	for _, e := range entries {
		size += len(encode(b, plain, e.ent, e.fields)) // the same for both encoders
	}
	b.SetBytes(int64(size / len(entries)))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		e := &entries[i%len(entries)]
		i++
		buf, err := enc.EncodeEntry(e.ent, e.fields)
		if err != nil {
			b.Fatal(err)
		}
		buf.Free()
	}
}

// benchRatio encodes the stream of entries with the plain json encoder and with pii_scrub
// wrapping it, in alternating rounds so that both see the same load, and reports the time
// of the second over the first as "scrubbed/json" (the target is at most 1.11, that is
// scrubbing at 0.9 times the speed of plain json or better).
func benchRatio(b *testing.B, entries []logEntry) {
	round := func(enc zapcore.Encoder) func(e *logEntry) {
		return func(e *logEntry) {
			buf, err := enc.EncodeEntry(e.ent, e.fields)
			if err != nil {
				b.Fatal(err)
			}
			buf.Free()
		}
	}
	alternate(b, entries, round(plainJSON(b)), round(scrubbing(b, "json")))
}

// benchLoggerRatio logs the stream of entries as Caddy's access logger does — a logger over
// the encoder, the request field added with WithLazy (the encoder is cloned and the request
// encoded into the clone), the other fields written with the entry — to a discarding sink,
// with the plain json encoder and with pii_scrub wrapping it, as benchRatio does.
func benchLoggerRatio(b *testing.B, entries []logEntry) {
	round := func(enc zapcore.Encoder) func(e *logEntry) {
		l := zap.New(zapcore.NewCore(enc, zapcore.AddSync(io.Discard), zapcore.InfoLevel))
		return func(e *logEntry) { l.WithLazy(e.fields[0]).Info(e.ent.Message, e.fields[1:]...) }
	}
	alternate(b, entries, round(plainJSON(b)), round(scrubbing(b, "json")))
}

// alternate runs plain and scrubbed over 1024 entries of the stream in turn, b.N times, and
// reports the time of scrubbed over the time of plain as "scrubbed/json".
func alternate(b *testing.B, entries []logEntry, plain, scrubbed func(e *logEntry)) {
	round := func(f func(e *logEntry)) time.Duration {
		start := time.Now()
		for i := range 1024 {
			f(&entries[i%len(entries)])
		}
		return time.Since(start)
	}
	var tp, ts time.Duration
	b.ReportAllocs()
	for b.Loop() {
		tp += round(plain)
		ts += round(scrubbed)
	}
	b.ReportMetric(float64(ts)/float64(tp), "scrubbed/json")
}

// plainJSON returns Caddy's json encoder, the baseline.
func plainJSON(b testing.TB) zapcore.Encoder {
	enc := &logging.JSONEncoder{}
	provision(b, enc)
	return enc
}

// scrubbing returns the pii_scrub encoder wrapping the named encoder.
func scrubbing(b *testing.B, wrap string) zapcore.Encoder {
	enc := &Encoder{WrappedRaw: json.RawMessage(`{"format":"` + wrap + `"}`)}
	provision(b, enc)
	return enc
}

// The clean entry over and over: the target of the issue.
func BenchmarkAccessLogRatio(b *testing.B)    { benchRatio(b, cleanEntries()) }
func BenchmarkAccessLogJSON(b *testing.B)     { benchEncode(b, plainJSON(b), cleanEntries()) }
func BenchmarkAccessLogScrubbed(b *testing.B) { benchEncode(b, scrubbing(b, "json"), cleanEntries()) }

// The same streams through a logger, as Caddy's access logger encodes them.
func BenchmarkAccessLoggerRatio(b *testing.B)       { benchLoggerRatio(b, cleanEntries()) }
func BenchmarkAccessLoggerVariedRatio(b *testing.B) { benchLoggerRatio(b, variedEntries()) }

// Varied traffic: every line has a masked client address and a new request ID.
func BenchmarkAccessLogVariedRatio(b *testing.B) { benchRatio(b, variedEntries()) }
func BenchmarkAccessLogVariedJSON(b *testing.B)  { benchEncode(b, plainJSON(b), variedEntries()) }
func BenchmarkAccessLogVariedScrubbed(b *testing.B) {
	benchEncode(b, scrubbing(b, "json"), variedEntries())
}

// An entry dense with personal data.
func BenchmarkAccessLogPIIJSON(b *testing.B) {
	ent, fields := accessEntry()
	benchEncode(b, plainJSON(b), []logEntry{{ent, fields}})
}
func BenchmarkAccessLogPIIScrubbed(b *testing.B) {
	ent, fields := accessEntry()
	benchEncode(b, scrubbing(b, "json"), []logEntry{{ent, fields}})
}

// Console.
func BenchmarkAccessLogConsole(b *testing.B) {
	enc := &logging.ConsoleEncoder{}
	provision(b, enc)
	benchEncode(b, enc, cleanEntries())
}
func BenchmarkAccessLogConsoleScrubbed(b *testing.B) {
	benchEncode(b, scrubbing(b, "console"), cleanEntries())
}
