package pii

import (
	"encoding/json"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// embedded returns, for a fuzzed choice, the text to embed and the personal value in it
// that must not survive scrubbing.
func embedded(choice uint8, seed uint64) (text, value string) {
	g := gen{rand.New(rand.NewPCG(seed, uint64(choice)))}
	switch choice % 13 {
	case 0:
		v := g.email()
		return v, v
	case 1:
		v := g.phone()
		return v, v
	case 2:
		v := g.card()
		return v, v
	case 3:
		v := g.ssn()
		return v, v
	case 4:
		v := g.iban()
		return v, v
	case 5:
		v := g.ip()
		return v, v
	case 6:
		v := g.jwt()
		return v, v
	case 7:
		v := g.token(16 + g.r.IntN(48))
		return "Bearer " + v, v
	case 8:
		v := g.awsKeyID()
		return v, v
	case 9:
		v := g.awsSecret()
		return v, v
	case 10:
		v := g.chars(6, alnum) + ":" + g.chars(12, alnum)
		return "https://" + v + "@example.com/x", v
	case 11:
		v := g.chars(12, alnum)
		return g.pick("password", "token", "api_key") + "=" + v, v
	}
	v := strings.Replace(g.email(), "@", "%40", 1)
	return "/?u=" + v, v
}

// FuzzScrub embeds a value of some kind between fuzzed text: the output must not contain
// it, and scrubbing must not panic.
func FuzzScrub(f *testing.F) {
	f.Add("2026-11-25T20:09:46Z INFO", "status=200", uint8(0), uint64(1))
	f.Add("ref 12", "exp 12/28", uint8(2), uint64(2))
	f.Add("+1", "5", uint8(2), uint64(3))
	f.Add("x@", ".com", uint8(0), uint64(4))
	f.Add("(", ")", uint8(1), uint64(5))
	f.Add("::", ":8080", uint8(5), uint64(6))
	f.Add("eyJ.", ".eyJ", uint8(6), uint64(7))
	f.Add("DE89", "0000", uint8(4), uint64(8))
	s := redactAll(f, Config{})
	f.Fuzz(func(t *testing.T, prefix, suffix string, choice uint8, seed uint64) {
		text, value := embedded(choice, seed)
		if strings.Contains(prefix, value) || strings.Contains(suffix, value) {
			return
		}
		out := s.String(prefix + " " + text + " " + suffix)
		if strings.Contains(out, value) {
			t.Errorf("%q survived in %q", value, out)
		}
		s.String(prefix + suffix) // never panics on any text
	})
}

// FuzzScrubJSON: valid JSON in, valid JSON out.
func FuzzScrubJSON(f *testing.F) {
	f.Add([]byte(`{"a":"x@y.com","n":4111111111111111,"ok":[1,true,null,"fine"]}`))
	f.Add([]byte(`{"headers":{"Cookie":["a=b"]},"display_name":{"x":[1,2.5e3,"z"]}}`))
	f.Add([]byte(`["\u0040\ud83d\ude00\n", -0.5e-3, "10.1.2.3", {}]`))
	f.Add([]byte(`"\xff 4111 1111 1111 1111"`))
	s := redactAll(f, Config{Fields: []string{"display_name"}})
	f.Fuzz(func(t *testing.T, doc []byte) {
		if !json.Valid(doc) {
			if _, err := s.JSON(doc); err == nil {
				t.Errorf("invalid %q accepted", doc)
			}
			return
		}
		out, err := s.JSON(doc)
		if err != nil {
			t.Fatalf("JSON(%q): %v", doc, err)
		}
		if !json.Valid(out) {
			t.Errorf("JSON(%q) = %q, not valid JSON", doc, out)
		}
	})
}

// FuzzPrefilter checks that the prefilter never keeps a detector from a match: on any
// text, the detectors it lets run find what all of them find.
func FuzzPrefilter(f *testing.F) {
	for _, l := range []string{cleanLine, denseLine, cleanJSON, "phone=%2B14155552671&x=1",
		"v2.11.9-1732565386", "a716-446655440000", "(415) 555-2671", "ref 12 4111 1111 1111 1111"} {
		f.Add(l)
	}
	s := redactAll(f, Config{Fields: corpusFields})
	f.Fuzz(func(t *testing.T, str string) {
		checkPrefilter(t, s, str)
	})
}

// checkPrefilter fails t when the detectors that the prefilter lets run on str find
// something else than all of them.
func checkPrefilter(t *testing.T, s *Scrubber, str string) {
	t.Helper()
	got := s.detect(str, prefilter(str, triggers(str)), nil)
	want := s.detect(str, allFeatures, nil)
	if len(got) > 0 {
		got = merge(got)
	}
	if len(want) > 0 {
		want = merge(want)
	}
	if !slices.Equal(got, want) {
		t.Errorf("%q: prefiltered %v, all detectors %v", str, got, want)
	}
}
