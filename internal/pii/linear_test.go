package pii

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// Scrubbing must take time linear in the length of the text: it runs on every logged
// value, and a client chooses the URI, the headers and most of what is logged. Each unit
// below, repeated, has tripped a detector into a quadratic scan at some point (email on
// "%40%40...", JWT segments on "eyJeyJ...", a '=' or ':' before every value, ...).
var pathological = []string{
	"%40", "@", "a@", ".@", "1", "1 ", "1-", "1.", "+1 ", "(1)", ".", ":", "1:", "a1:", "::", "Bearer ",
	"bearer=", `\u0040`, `\u002e`, `\\`, `\"`, `"`, `{"a":`, `{`, `[`, "eyJ", "eyJhbGciOi.", "eyJhbGciOiJ9.eyJ",
	"token ", "token=", "token:", "key: ", `"api_key":"`, "password=", "%2540", "%25", "%2F", "a/", "/",
	"A", "AKIA", "1AKIA", "DE89", "DE89 ", "de89 ", "://", "a:b@", "x.", "a-", "Authorization: ", "Cookie: a=1; ",
	"msisdn=1", "0", "0 ", "4111 ", "1.1.1.1.", "ff:", "a=b&", "\x00", "ya29.",
}

// scrubTime returns the mean time of scrubbing str over about a millisecond (at least once:
// on a loaded machine the millisecond can pass before the first).
func scrubTime(s *Scrubber, str string) time.Duration {
	reps, start := 0, time.Now()
	for reps == 0 || time.Since(start) < time.Millisecond {
		s.String(str)
		reps++
	}
	return time.Since(start) / time.Duration(reps)
}

// linearRatio returns the time to scrub unit repeated to 8n bytes over that of n bytes:
// the least time of each over rounds that alternate them, so that both see the same load
// and a burst of it does not count.
func linearRatio(s *Scrubber, prefix, unit string, n int) float64 {
	small := prefix + strings.Repeat(unit, n/len(unit))
	large := prefix + strings.Repeat(unit, 8*n/len(unit))
	ts, tl := time.Duration(1<<63-1), time.Duration(1<<63-1)
	for range 7 {
		ts, tl = min(ts, scrubTime(s, small)), min(tl, scrubTime(s, large))
	}
	return float64(tl) / float64(ts)
}

// maxRatio bounds the time ratio of 8 times the input: 8 for linear time, 64 for
// quadratic; generous, for a loaded machine.
const maxRatio = 24

// TestLinear scrubs pathological texts of n and 8n bytes and fails when the ratio of the
// times is super-linear.
func TestLinear(t *testing.T) {
	s := redactAll(t, Config{Fields: []string{"display_name"}})
	worst, worstUnit := 0.0, ""
	var ratios strings.Builder
	for _, unit := range pathological {
		r := linearRatio(s, "", unit, 4096)
		if r > maxRatio {
			// A loaded machine can slow one measurement: measure once more.
			r = min(r, linearRatio(s, "", unit, 4096))
		}
		fmt.Fprintf(&ratios, " %q:%.1f", unit, r)
		if r > worst {
			worst, worstUnit = r, unit
		}
		if r > maxRatio {
			t.Errorf("%q repeated: 8x the input takes %.1fx the time", unit, r)
		}
	}
	t.Logf("%d pathological inputs of 4 KiB and 32 KiB: worst time ratio %.1f (%q; linear 8, quadratic 64)\n%s",
		len(pathological), worst, worstUnit, ratios.String())
}

// FuzzLinear fails when scrubbing a fuzzed unit repeated to 32 KiB takes super-linear time
// against 4 KiB, or panics.
func FuzzLinear(f *testing.F) {
	for _, unit := range pathological {
		f.Add("", unit)
	}
	f.Add("GET /search?q=", "%2540a")
	f.Add(`{"msg":"`, `\"token\":\"`)
	s := redactAll(f, Config{Fields: []string{"display_name"}})
	f.Fuzz(func(t *testing.T, prefix, unit string) {
		if unit == "" || len(unit) > 32 || len(prefix) > 64 {
			return
		}
		s.String(prefix + unit) // never panics
		large := prefix + strings.Repeat(unit, 32768/len(unit))
		if d := scrubTime(s, large); d < time.Millisecond {
			return // too fast to be quadratic, and too fast to measure
		}
		if r := linearRatio(s, prefix, unit, 4096); r > maxRatio && linearRatio(s, prefix, unit, 4096) > maxRatio {
			t.Errorf("%q then %q repeated: 8x the input takes %.1fx the time", prefix, unit, r)
		}
	})
}
