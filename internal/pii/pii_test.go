package pii

import (
	"encoding/json"
	"maps"
	"strings"
	"sync"
	"testing"
	"unsafe"
)

// redactAll returns a Scrubber that redacts every kind.
func redactAll(t testing.TB, cfg Config) *Scrubber {
	t.Helper()
	if cfg.Modes == nil {
		cfg.Modes = map[string]string{"ip": "redact"}
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestString(t *testing.T) {
	s := redactAll(t, Config{Fields: []string{"display_name"}})
	for _, tc := range []struct{ in, want string }{
		// email
		{"mail alice@example.com now", "mail [REDACTED:email] now"},
		{"to: Bob.Smith+tag@mail.example.co.uk.", "to: [REDACTED:email]."},
		{"/x?email=bob%40example.org&x=1", "/x?email=[REDACTED:email]&x=1"},
		{"go get pkg@v1.2.3", "go get pkg@v1.2.3"},
		{"user@localhost and @mention and a@b.c", "user@localhost and @mention and a@b.c"},
		// phone
		{"call +14155552671", "call [REDACTED:phone]"},
		{"call +44 20 7946 0958.", "call [REDACTED:phone]."},
		{"call +1 (415) 555-2671", "call [REDACTED:phone]"},
		{"call (415) 555-2671 or 415.555.2671", "call [REDACTED:phone] or [REDACTED:phone]"},
		{"call 1-415-555-2671", "call [REDACTED:phone]"},
		{"tel 020 7946 0958, 01 23 45 67 89, 07911123456", "tel [REDACTED:phone], [REDACTED:phone], [REDACTED:phone]"},
		{"phone=%2B14155552671", "phone=[REDACTED:phone]"},
		{"unix 1764100186 ms 1764100186123", "unix 1764100186 ms 1764100186123"},
		{"date 2026-11-25 05.11.2026 tz +0100", "date 2026-11-25 05.11.2026 tz +0100"},
		{"offset 123-456-7890", "offset 123-456-7890"}, // area code cannot start with 1
		// card
		{"4111111111111111", "[REDACTED:card]"},
		{"card 4111 1111 1111 1111 exp 12/28", "card [REDACTED:card] exp 12/28"},
		{"amex 3782-822463-10005", "amex [REDACTED:card]"},
		{"ref 12 5555 5555 5555 4444", "ref 12 [REDACTED:card]"},
		{"+1 4111 1111 1111 1111", "+1 [REDACTED:card]"},
		{"n 4111111111111112", "n 4111111111111112"},         // fails Luhn
		{"ns 1764100186123456789", "ns 1764100186123456789"}, // no card network
		{"id a4111111111111111 4111111111111111x", "id a4111111111111111 4111111111111111x"},
		{"4111 1111 1111 11111", "4111 1111 1111 11111"}, // not a card layout
		// ssn
		{"ssn 123-45-6789", "ssn [REDACTED:ssn]"},
		{"ssn 123 45 6789", "ssn [REDACTED:ssn]"},
		{"ssn 000-12-3456 666-12-3456 923-45-6789 123-00-4567", "ssn 000-12-3456 666-12-3456 923-45-6789 123-00-4567"},
		// iban
		{"iban DE89 3704 0044 0532 0130 00 ok", "iban [REDACTED:iban] ok"},
		{"iban GB82WEST12345698765432", "iban [REDACTED:iban]"},
		{"iban GB83WEST12345698765432", "iban GB83WEST12345698765432"}, // mod-97 fails
		// ip
		{"from 192.168.1.23:8080", "from [REDACTED:ip]:8080"},
		{"from [2001:db8::1]:443 and ::ffff:10.0.0.1", "from [[REDACTED:ip]]:443 and [REDACTED:ip]"},
		{"v1.2.3.4 1.2.3.4.5 256.1.1.1 10.0.0", "v1.2.3.4 1.2.3.4.5 256.1.1.1 10.0.0"},
		{"at 20:09:46 mac 00:1a:2b:3c:4d:5e std::string Foo::Bar", "at 20:09:46 mac 00:1a:2b:3c:4d:5e std::string Foo::Bar"},
		// jwt, bearer
		{"t=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl-_x", "t=[REDACTED:jwt]"},
		{"sent Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.sig", "sent Bearer [REDACTED:jwt]"},
		{"upstream said bearer 0a1b2c3d4e5f6g7h", "upstream said bearer [REDACTED:bearer]"},
		// header values in text
		{"Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.sig", "Authorization: [REDACTED:header]"},
		{"> Cookie: a=b; c=d\r\n> Accept: */*", "> Cookie: [REDACTED:header]\r\n> Accept: */*"},
		{`map[Set-Cookie:[sid=1; Path=/] Vary:[Accept]]`, `map[Set-Cookie:[[REDACTED:header]] Vary:[Accept]]`},
		{"missing bearer token; Bearer authentication", "missing bearer token; Bearer authentication"},
		// aws
		{"key AKIAIOSFODNN7EXAMPLE.", "key [REDACTED:aws_access_key_id]."},
		{"secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "secret [REDACTED:aws_secret_key]"},
		{"sha da39a3ee5e6b4b0d3255bfef95601890afd80709", "sha da39a3ee5e6b4b0d3255bfef95601890afd80709"},
		{"AKIAIOSFODNN7EXAMPL AKIAIOSFODNN7EXAMPLEX", "AKIAIOSFODNN7EXAMPL AKIAIOSFODNN7EXAMPLEX"},
		// url credentials, params
		{"dsn postgres://app:s3cr3t@db:5432/x", "dsn postgres://[REDACTED:url_credentials]@db:5432/x"},
		{"/login?next=/&password=hunter2&Api-Key=k1#top", "/login?next=/&password=[REDACTED:param]&Api-Key=[REDACTED:param]#top"},
		{"display_name=Alice", "display_name=[REDACTED:field]"},
		{"cache_key=abc token=", "cache_key=abc token="},
		// ordinary values
		{"2026-11-25T20:09:46.123456789Z INFO took 12.5ms status=200", "2026-11-25T20:09:46.123456789Z INFO took 12.5ms status=200"},
		{"request_id=550e8400-e29b-41d4-a716-446655440000 port 8080 go1.26.8", "request_id=550e8400-e29b-41d4-a716-446655440000 port 8080 go1.26.8"},
	} {
		if got := s.String(tc.in); got != tc.want {
			t.Errorf("String(%q)\n got %q\nwant %q", tc.in, got, tc.want)
		}
	}
}

func TestModes(t *testing.T) {
	s, err := New(Config{
		Modes:        map[string]string{"card": "mask", "email": "pseudonym", "phone": "off", "ssn": "mask"},
		PseudonymKey: "0123456789abcdef0123",
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ in, want string }{
		{"4111 1111 1111 1111", "**** **** **** 1111"},
		{"ssn 123-45-6789", "ssn ***-**-6789"},
		{"from 192.168.1.23 and 2001:db8:1:2:3:4:5:6", "from 192.168.1.0 and 2001:db8:1:2::"}, // ip masks by default
		{"call +14155552671", "call +14155552671"},
		{"jwt-less Bearer abc123def456", "jwt-less Bearer [REDACTED:bearer]"},
	} {
		if got := s.String(tc.in); got != tc.want {
			t.Errorf("String(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	a, b := s.String("alice@example.com"), s.String("ALICE@Example.com")
	if a != b || !strings.HasPrefix(a, "[email:") || len(a) != len("[email:]")+16 {
		t.Errorf("pseudonyms %q and %q: want one [email:HEX] token for both", a, b)
	}
	if c := s.String("bob@example.com"); c == a {
		t.Errorf("two emails share the pseudonym %q", c)
	}
	other, err := New(Config{Modes: map[string]string{"email": "pseudonym"}, PseudonymKey: "another key, 16+ bytes"})
	if err != nil {
		t.Fatal(err)
	}
	if other.String("alice@example.com") == a {
		t.Error("pseudonym does not depend on the key")
	}
	m, err := New(Config{Modes: map[string]string{"email": "mask", "ip": "redact"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := m.String("alice@example.com 10.1.2.3"); got != "a***@example.com [REDACTED:ip]" {
		t.Errorf("mask email, redact ip: got %q", got)
	}
}

func TestNewErrors(t *testing.T) {
	for _, cfg := range []Config{
		{Modes: map[string]string{"mail": "redact"}},
		{Modes: map[string]string{"email": "hide"}},
		{Modes: map[string]string{"email": "pseudonym"}},
		{Modes: map[string]string{"email": "pseudonym"}, PseudonymKey: "short"},
		{Fields: []string{""}},
		{Params: []string{strings.Repeat("x", maxName+1)}},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v): no error", cfg)
		}
	}
}

func TestConfigJSON(t *testing.T) {
	var cfg Config
	doc := `{"modes":{"ip":"redact"},"pseudonym_key":"k","params":["ticket"],"headers":["x-session"],"fields":["display_name"]}`
	if err := json.Unmarshal([]byte(doc), &cfg); err != nil {
		t.Fatal(err)
	}
	s := redactAll(t, cfg)
	if got := s.String("ticket=1 10.0.0.1"); got != "ticket=[REDACTED:param] [REDACTED:ip]" {
		t.Errorf("got %q", got)
	}
	if got := s.Field("X-Session", "abc"); got != "[REDACTED:header]" {
		t.Errorf("got %q", got)
	}
}

func TestField(t *testing.T) {
	s := redactAll(t, Config{Fields: []string{"display_name"}})
	for _, tc := range []struct{ name, value, want string }{
		{"Authorization", "Basic Zm9vOmJhcg==", "[REDACTED:header]"},
		{"cookie", "sid=1", "[REDACTED:header]"},
		{"Set-Cookie", "sid=1; Path=/", "[REDACTED:header]"},
		{"Display-Name", "Alice", "[REDACTED:field]"},
		{"password", "hunter2", "[REDACTED:param]"},
		{"password", "", ""},
		{"user_agent", "curl/8.5.0", "curl/8.5.0"},
		{"msg", "mail alice@example.com", "mail [REDACTED:email]"},
	} {
		if got := s.Field(tc.name, tc.value); got != tc.want {
			t.Errorf("Field(%q, %q) = %q, want %q", tc.name, tc.value, got, tc.want)
		}
	}
}

func TestJSON(t *testing.T) {
	s := redactAll(t, Config{Fields: []string{"display_name"}})
	for _, tc := range []struct{ in, want string }{
		{`{"a":"x@y.com","n":4111111111111111,"ok":[1,true,null,"fine"]}`,
			`{"a":"[REDACTED:email]","n":"[REDACTED:card]","ok":[1,true,null,"fine"]}`},
		{`{"request":{"headers":{"Cookie":["a=b"],"Accept":["*/*"]}}, "display_name":{"first":"Al","n":3,"b":false}}`,
			`{"request":{"headers":{"Cookie":["[REDACTED:header]"],"Accept":["*/*"]}}, "display_name":{"first":"[REDACTED:field]","n":"[REDACTED:field]","b":false}}`},
		{`{"alice@example.com": "x\u0040y.com \"q\"\n"}`, `{"[REDACTED:email]": "[REDACTED:email] \"q\"\n"}`},
		{`[ "plain", {"uri":"/?token=t0k"} ]`, `[ "plain", {"uri":"/?token=[REDACTED:param]"} ]`},
		{`"\u00e9 10.1.2.3 \ud83d\ude00"`, `"é [REDACTED:ip] 😀"`},
		{`{}`, `{}`},
	} {
		got, err := s.JSON([]byte(tc.in))
		if err != nil {
			t.Errorf("JSON(%s): %v", tc.in, err)
			continue
		}
		if string(got) != tc.want || !json.Valid(got) {
			t.Errorf("JSON(%s)\n got %s\nwant %s", tc.in, got, tc.want)
		}
	}
	if _, err := s.JSON([]byte(`{"a":`)); err != ErrInvalidJSON {
		t.Errorf("invalid JSON: err = %v", err)
	}
	clean := []byte(`{"level":"info","ts":"2026-11-25T20:09:46Z","status":200}`)
	if got, _ := s.JSON(clean); &got[0] != &clean[0] {
		t.Error("clean document was copied")
	}
}

func TestOnRedact(t *testing.T) {
	var mu sync.Mutex
	counts := map[Kind]int{}
	s := redactAll(t, Config{OnRedact: func(k Kind) { mu.Lock(); counts[k]++; mu.Unlock() }})
	s.String("a@b.com c@d.org 4111111111111111 and 2026-11-25")
	s.Field("Cookie", "x")
	want := map[Kind]int{KindEmail: 2, KindCard: 1, KindHeader: 1}
	if len(counts) != len(want) {
		t.Fatalf("counts %v, want %v", counts, want)
	}
	for k, n := range want {
		if counts[k] != n {
			t.Errorf("%s: %d redactions, want %d", k, counts[k], n)
		}
	}
}

func TestKinds(t *testing.T) {
	seen := map[string]bool{}
	for _, k := range Kinds() {
		name := k.String()
		if got, ok := kindByName(name); !ok || got != k || seen[name] {
			t.Errorf("kind %d: name %q does not round-trip", k, name)
		}
		seen[name] = true
	}
	if Kind(200).String() != "Kind(200)" {
		t.Error(Kind(200).String())
	}
}

// raceEnabled is set under the race detector (race_test.go).
var raceEnabled bool

func TestCleanDoesNotAllocate(t *testing.T) {
	s := redactAll(t, Config{})
	line := cleanLine
	var out string
	if n := testing.AllocsPerRun(100, func() { out = s.String(line) }); n != 0 {
		t.Errorf("String on a clean line: %v allocations", n)
	}
	if unsafe.StringData(out) != unsafe.StringData(line) {
		t.Error("String on a clean line did not return its argument")
	}
	doc := []byte(cleanJSON)
	if n := testing.AllocsPerRun(100, func() { _, _ = s.JSON(doc) }); n != 0 && !raceEnabled {
		t.Errorf("JSON on a clean document: %v allocations", n)
	}
}

// TestResultCache scrubs strings often enough to be cached, from several goroutines: every
// call gives the same output and counts the same redactions as the first, and a clean
// string comes back as the argument itself.
func TestResultCache(t *testing.T) {
	var mu sync.Mutex
	counts := map[Kind]int{}
	s := redactAll(t, Config{OnRedact: func(k Kind) { mu.Lock(); counts[k]++; mu.Unlock() }})
	const calls = 8
	strs := []string{
		"Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
		"198.51.100.7",
		"mail a@b.com card 4111111111111111",
	}
	want := make([]string, len(strs))
	for i, str := range strs {
		want[i] = s.String(str)
	}
	first := maps.Clone(counts)
	var wg sync.WaitGroup
	for range calls - 1 {
		wg.Go(func() {
			for i, str := range strs {
				// A copy, so that a hit cannot come from comparing the same pointer.
				str = strings.Clone(str)
				out := s.String(str)
				if out != want[i] {
					t.Errorf("String(%q) = %q, want %q", str, out, want[i])
				}
				if out == str && unsafe.StringData(out) != unsafe.StringData(str) {
					t.Errorf("String(%q) did not return its argument", str)
				}
			}
		})
	}
	wg.Wait()
	if len(first) != 3 {
		t.Fatalf("first counts %v, want ip, email and card", first)
	}
	for k, n := range first {
		if counts[k] != calls*n {
			t.Errorf("%s: %d redactions in %d calls, want %d", k, counts[k], calls, calls*n)
		}
	}
}
