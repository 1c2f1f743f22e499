package piiscrub

import (
	"encoding/json"
	"testing"

	"go.uber.org/zap/zapcore"

	"github.com/caddyserver/caddy/v2/modules/logging"
)

// benchEncode encodes a realistic access-log entry with enc, as Caddy's access logger does.
func benchEncode(b *testing.B, enc zapcore.Encoder, entry func() (zapcore.Entry, []zapcore.Field)) {
	ent, fields := entry()
	b.ReportAllocs()
	for b.Loop() {
		buf, err := enc.EncodeEntry(ent, fields)
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(buf.Len()))
		buf.Free()
	}
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

func BenchmarkAccessLogJSON(b *testing.B)     { benchEncode(b, plainJSON(b), cleanEntry) }
func BenchmarkAccessLogScrubbed(b *testing.B) { benchEncode(b, scrubbing(b, "json"), cleanEntry) }
func BenchmarkAccessLogPIIJSON(b *testing.B)  { benchEncode(b, plainJSON(b), accessEntry) }
func BenchmarkAccessLogPIIScrubbed(b *testing.B) {
	benchEncode(b, scrubbing(b, "json"), accessEntry)
}
func BenchmarkAccessLogConsole(b *testing.B) {
	enc := &logging.ConsoleEncoder{}
	provision(b, enc)
	benchEncode(b, enc, cleanEntry)
}
func BenchmarkAccessLogConsoleScrubbed(b *testing.B) {
	benchEncode(b, scrubbing(b, "console"), cleanEntry)
}
