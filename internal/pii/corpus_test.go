package pii

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The labelled corpus, testdata/corpus.jsonl, is written by generateCorpus from a fixed
// seed: `go test -run TestCorpus -update ./internal/pii/` rewrites it, and TestCorpus fails
// when file and generator disagree. Each line is one log string (or, with "field", one
// field value) and the personal data in it, by kind; lines without any are hard negatives.
// Values in testdata/corpus-extra.jsonl (same format) are cases written by hand or found by
// fuzzing.

var update = flag.Bool("update", false, "rewrite testdata/corpus.jsonl from the generator")

// corpusLine is one labelled line of the corpus.
type corpusLine struct {
	Field string      `json:"field,omitempty"`
	Text  string      `json:"text"`
	PII   []corpusPII `json:"pii,omitempty"`
}

// corpusPII is one labelled value.
type corpusPII struct {
	Kind  string `json:"kind"`
	Value string `json:"value"`
}

// corpusFields are the PII field names the corpus is scrubbed with.
var corpusFields = []string{"display_name"}

type gen struct{ r *rand.Rand }

func (g gen) pick(xs ...string) string { return xs[g.r.IntN(len(xs))] }

func (g gen) digits(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('0' + g.r.IntN(10))
	}
	return string(b)
}

func (g gen) chars(n int, alphabet string) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[g.r.IntN(len(alphabet))]
	}
	return string(b)
}

const (
	alnum   = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	b64std  = alnum + "+/"
	b64url  = alnum + "-_"
	lowerHx = "0123456789abcdef"
)

// line builds a labelled line from a template with one %s per value.
func line(tmpl string, kind string, values ...string) corpusLine {
	args := make([]any, len(values))
	l := corpusLine{}
	for i, v := range values {
		args[i] = v
		l.PII = append(l.PII, corpusPII{Kind: kind, Value: v})
	}
	l.Text = fmt.Sprintf(tmpl, args...)
	return l
}

func (g gen) email() string {
	first := g.pick("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy")
	last := g.pick("smith", "jones", "ng", "garcia", "müller", "o.neil", "li", "kowalski")
	last = strings.NewReplacer("ü", "u").Replace(last)
	local := g.pick(first, first+"."+last, first+"+"+g.pick("news", "muejam"), first+"_"+last+g.digits(2), strings.ToUpper(first[:1])+first[1:]+"."+last)
	return local + "@" + g.pick("example.com", "mail.example.org", "muejam.io", "uni.example.ac.uk", "example-mail.de", "Example.NET")
}

func (g gen) phone() string {
	area := fmt.Sprintf("%d%s", 2+g.r.IntN(8), g.digits(2))
	exch := fmt.Sprintf("%d%s", 2+g.r.IntN(8), g.digits(2))
	sub := g.digits(4)
	switch g.r.IntN(11) {
	case 0:
		return "+1" + area + exch + sub
	case 1:
		return "+44 20 " + g.digits(4) + " " + g.digits(4)
	case 2:
		return "+1 (" + area + ") " + exch + "-" + sub
	case 3:
		return "(" + area + ") " + exch + "-" + sub
	case 4:
		return area + "-" + exch + "-" + sub
	case 5:
		return area + "." + exch + "." + sub
	case 6:
		return "1-" + area + "-" + exch + "-" + sub
	case 7:
		return "+49 30 " + g.digits(8)
	case 8:
		return "0" + fmt.Sprint(1+g.r.IntN(9)) + " " + g.digits(2) + " " + g.digits(2) + " " + g.digits(2) + " " + g.digits(2)
	case 9:
		return "07" + g.digits(9)
	}
	return "+33 6 " + g.digits(2) + " " + g.digits(2) + " " + g.digits(2) + " " + g.digits(2)
}

// luhnDigit returns the check digit that makes payload+digit pass the Luhn check.
func luhnDigit(payload string) byte {
	for d := byte('0'); d <= '9'; d++ {
		if luhn([]byte(payload + string(d))) {
			return d
		}
	}
	panic("unreachable")
}

func (g gen) card() string {
	var prefix string
	var n int
	switch g.r.IntN(9) {
	case 0, 1:
		prefix, n = "4", 16
	case 2:
		prefix, n = fmt.Sprint(51+g.r.IntN(5)), 16
	case 3:
		prefix, n = fmt.Sprint(2221+g.r.IntN(500)), 16
	case 4:
		prefix, n = g.pick("34", "37"), 15
	case 5:
		prefix, n = "6011", 16
	case 6:
		prefix, n = fmt.Sprint(3528+g.r.IntN(62)), 16
	case 7:
		prefix, n = "62", 16+g.r.IntN(4)
	default:
		prefix, n = "4", 13
	}
	payload := prefix + g.digits(n-len(prefix)-1)
	num := payload + string(luhnDigit(payload))
	if n == 15 && g.r.IntN(2) == 0 {
		return num[:4] + " " + num[4:10] + " " + num[10:]
	}
	sep := g.pick("", " ", "-")
	if sep == "" || n == 13 {
		return num
	}
	var parts []string
	for i := 0; i < len(num); i += 4 {
		parts = append(parts, num[i:min(i+4, len(num))])
	}
	return strings.Join(parts, sep)
}

func (g gen) ssn() string {
	area := 1 + g.r.IntN(899)
	if area == 666 {
		area = 667
	}
	sep := g.pick("-", " ")
	return fmt.Sprintf("%03d%s%02d%s%04d", area, sep, 1+g.r.IntN(99), sep, 1+g.r.IntN(9999))
}

func (g gen) iban() string {
	var cc, bban string
	switch g.r.IntN(6) {
	case 0:
		cc, bban = "DE", g.digits(18)
	case 1:
		cc, bban = "GB", g.chars(4, "ABCDEFGHIJKLMNOPQRSTUVWXYZ")+g.digits(14)
	case 2:
		cc, bban = "FR", g.digits(23)
	case 3:
		cc, bban = "NL", g.chars(4, "ABCDEFGHIJKLMNOPQRSTUVWXYZ")+g.digits(10)
	case 4:
		cc, bban = "ES", g.digits(20)
	default:
		cc, bban = "BE", g.digits(12)
	}
	var iban string
	for ck := 2; ck <= 98; ck++ {
		if iban = fmt.Sprintf("%s%02d%s", cc, ck, bban); mod97(iban) {
			break
		}
	}
	if g.r.IntN(2) == 0 {
		return iban
	}
	var parts []string
	for i := 0; i < len(iban); i += 4 {
		parts = append(parts, iban[i:min(i+4, len(iban))])
	}
	return strings.Join(parts, " ")
}

func (g gen) ip() string {
	if g.r.IntN(3) == 0 {
		var a [16]byte
		for i := range a {
			a[i] = byte(g.r.IntN(256))
		}
		if g.r.IntN(2) == 0 {
			a[8], a[9], a[10], a[11], a[12], a[13] = 0, 0, 0, 0, 0, 0
		}
		a[0], a[1] = 0x20, 0x01
		return netip.AddrFrom16(a).String()
	}
	first := 1 + g.r.IntN(222) // 1-223 but 127 (loopback)
	if first >= 127 {
		first++
	}
	return fmt.Sprintf("%d.%d.%d.%d", first, g.r.IntN(256), g.r.IntN(256), g.r.IntN(256))
}

func (g gen) jwt() string {
	enc := base64.RawURLEncoding.EncodeToString
	header := enc([]byte(g.pick(`{"alg":"HS256","typ":"JWT"}`, `{"alg":"RS256","kid":"`+g.chars(8, alnum)+`"}`)))
	payload := enc(fmt.Appendf(nil, `{"sub":"%d","iat":%d,"email_verified":true}`, g.r.IntN(1e6), 1764000000+g.r.IntN(1e6)))
	return header + "." + payload + "." + g.chars(43, b64url)
}

func (g gen) token(n int) string { return g.chars(n, b64url+".~") }

func (g gen) awsKeyID() string {
	return g.pick("AKIA", "ASIA") + g.chars(16, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
}

func (g gen) awsSecret() string { return g.chars(40, b64std) }

// generateCorpus returns the generated corpus: positives of every kind in log contexts,
// then hard negatives.
func generateCorpus() []corpusLine {
	g := gen{rand.New(rand.NewPCG(8, 2026))}
	var c []corpusLine
	add := func(n int, f func() corpusLine) {
		for range n {
			c = append(c, f())
		}
	}
	add(40, func() corpusLine {
		return line(g.pick("user %s signed in", "sending receipt to <%s>", `{"msg":"invite","to":"%s"}`,
			"password reset requested for %s from the web app", "mailto:%s"), "email", g.email())
	})
	add(10, func() corpusLine {
		e := strings.Replace(g.email(), "@", g.pick("%40", "%40"), 1)
		return line("GET /v1/profiles?email=%s&limit=20 HTTP/1.1", "email", e)
	})
	add(45, func() corpusLine {
		return line(g.pick("sms sent to %s", "phone=%s status=queued", `"phone":"%s"`, "call back on %s tomorrow"), "phone", g.phone())
	})
	add(45, func() corpusLine {
		return line(g.pick("charge card %s amount 12.50 EUR", "card_number=%s", `{"card":"%s","exp":"12/28"}`,
			"payment declined for %s"), "card", g.card())
	})
	add(30, func() corpusLine {
		return line(g.pick("ssn %s on file", "tax id: %s", `{"ssn":"%s"}`), "ssn", g.ssn())
	})
	add(30, func() corpusLine {
		return line(g.pick("payout to %s scheduled", "iban=%s", "refund to account %s failed"), "iban", g.iban())
	})
	add(40, func() corpusLine {
		ip := g.ip()
		if strings.Contains(ip, ":") {
			return line(g.pick("client [%s]:443 connected", "remote_ip=%s", "X-Forwarded-For: %s"), "ip", ip)
		}
		if g.r.IntN(4) == 0 {
			return line("X-Forwarded-For: %s, %s", "ip", ip, g.ip())
		}
		return line(g.pick("client %s:51234 connected", "remote_ip=%s", "blocked %s after 5 attempts"), "ip", ip)
	})
	add(30, func() corpusLine {
		return line(g.pick("token %s expired", "forwarding Bearer %s", "id_tok=%s"), "jwt", g.jwt())
	})
	add(30, func() corpusLine {
		return line(g.pick("upstream sent bearer %s", "retrying with BEARER %s", "ws connect Bearer %s"), "bearer", g.token(16+g.r.IntN(48)))
	})
	add(20, func() corpusLine {
		return line(g.pick("Authorization: %s", "> cookie: %s\n> accept: */*", "map[Set-Cookie:[%s] Vary:[Accept]]"), "header",
			g.pick("Bearer ", "Basic ", "sid=", "session=")+g.chars(24, alnum))
	})
	add(25, func() corpusLine {
		return line(g.pick("aws_access_key_id %s", "using key %s for s3", "AWS_ACCESS_KEY_ID: %s"), "aws_access_key_id", g.awsKeyID())
	})
	add(25, func() corpusLine {
		return line(g.pick("aws secret %s", "loaded secret key %s from env", `"SecretAccessKey": "%s"`), "aws_secret_key", g.awsSecret())
	})
	add(25, func() corpusLine {
		user, pass := g.pick("app", "admin", "bob", "deploy"), g.chars(12, alnum)
		return line(g.pick("dsn postgres://%s@db.internal:5432/muejam", "fetching https://%s@git.example.com/repo.git",
			"redis://%s@cache:6379/0"), "url_credentials", user+":"+pass)
	})
	add(35, func() corpusLine {
		name := g.pick("password", "token", "secret", "api_key", "code", "access_token", "client_secret", "Password", "API-KEY")
		return line(g.pick("POST /login?user=me&"+name+"=%s HTTP/1.1", "form "+name+"=%s&remember=1", "GET /cb?state=ok&"+name+"=%s"), "param", g.chars(10+g.r.IntN(20), alnum))
	})
	add(20, func() corpusLine {
		l := line("%s", "header", g.pick("Basic ", "Bearer ", "session=", "sid=")+g.chars(24, alnum))
		l.Field = g.pick("Authorization", "Cookie", "Set-Cookie", "proxy-authorization", "X-Api-Key")
		return l
	})
	add(20, func() corpusLine {
		l := line("%s", "field", g.pick("Alice", "Bob the Builder", "Zoë", "j. random hacker")+" "+g.digits(3))
		l.Field = "display_name"
		return l
	})
	add(20, func() corpusLine { // several kinds on one line
		e, p, k := g.email(), g.phone(), g.card()
		return corpusLine{
			Text: fmt.Sprintf("order by %s phone %s paid with %s", e, p, k),
			PII:  []corpusPII{{"email", e}, {"phone", p}, {"card", k}},
		}
	})
	return append(c, generateNegatives(g)...)
}

// generateNegatives returns lines that hold no personal data, among them values that look
// like some.
func generateNegatives(g gen) []corpusLine {
	var c []corpusLine
	add := func(n int, f func() string) {
		for range n {
			c = append(c, corpusLine{Text: f()})
		}
	}
	uuid := func() string {
		h := g.chars(32, lowerHx)
		return h[:8] + "-" + h[8:12] + "-4" + h[13:16] + "-a" + h[17:20] + "-" + h[20:]
	}
	add(40, func() string {
		return fmt.Sprintf("2026-%02d-%02dT%02d:%02d:%02d.%sZ INFO handled request status=%s duration=%d.%dms",
			1+g.r.IntN(12), 1+g.r.IntN(28), g.r.IntN(24), g.r.IntN(60), g.r.IntN(60), g.digits(9), g.pick("200", "404", "503"), g.r.IntN(900), g.r.IntN(10))
	})
	add(30, func() string {
		return fmt.Sprintf("unix=%d ms=%d%s us=%d%s ns=%d%s", 1700000000+g.r.IntN(1e8), 1700000000+g.r.IntN(1e8), g.digits(3),
			1700000000+g.r.IntN(1e8), g.digits(6), 1700000000+g.r.IntN(1e8), g.digits(9))
	})
	add(30, func() string {
		return "request_id=" + uuid() + " trace_id=" + g.chars(32, lowerHx) + " span_id=" + g.chars(16, lowerHx)
	})
	add(20, func() string {
		return "X-Request-ID: " + g.pick(uuid(), "req_"+g.chars(20, alnum), "01J"+g.chars(23, "0123456789ABCDEFGHJKMNPQRSTVWXYZ"))
	})
	add(20, func() string {
		return fmt.Sprintf("took %s, retry in %s, timeout %s", g.pick("350µs", "1.5s", "2m30s", "1h2m3.5s"), g.pick("250ms", "10s"), g.pick("30s", "15s"))
	})
	add(25, func() string {
		return fmt.Sprintf("caddy v2.%d.%d go%s build %d.%d.%d.%d+%s", g.r.IntN(12), g.r.IntN(10), g.pick("1.26.8", "1.22.0"),
			g.r.IntN(20), g.r.IntN(20), 1000+g.r.IntN(30000), g.r.IntN(9), g.chars(7, lowerHx))
	})
	add(20, func() string {
		return fmt.Sprintf("listening on %s:%d, upstream appserver:%d, postgres 127.0.0.1 port %d", g.pick("localhost", "[::]"), 1024+g.r.IntN(60000), 8081, 5432)
	})
	add(30, func() string { // 16-digit numbers that fail Luhn, some with card prefixes
		for {
			n := g.pick("4", "5", "6", "3", "9") + g.digits(15)
			if !luhn([]byte(n)) {
				return fmt.Sprintf(g.pick("order %s shipped", "ref=%s", "tracking %s"), n)
			}
		}
	})
	add(20, func() string {
		return fmt.Sprintf("date %d-%02d-%02d %02d.%02d.%d at %02d:%02d:%02d mac %s", 2020+g.r.IntN(8), 1+g.r.IntN(12), 1+g.r.IntN(28),
			1+g.r.IntN(28), 1+g.r.IntN(12), 2020+g.r.IntN(8), g.r.IntN(24), g.r.IntN(60), g.r.IntN(60),
			strings.Join([]string{g.chars(2, lowerHx), g.chars(2, lowerHx), g.chars(2, lowerHx), g.chars(2, lowerHx), g.chars(2, lowerHx), g.chars(2, lowerHx)}, ":"))
	})
	add(20, func() string {
		sum := make([]byte, 32)
		for i := range sum {
			sum[i] = byte(g.r.IntN(256))
		}
		return "commit " + g.chars(40, lowerHx) + " etag \"" + base64.StdEncoding.EncodeToString(sum) + "\" sha256:" + g.chars(64, lowerHx)
	})
	add(25, func() string {
		return fmt.Sprintf("GET /v1/stories/%d/chapters/%d?limit=%d&cursor=%s HTTP/2.0 %d %d bytes", g.r.IntN(1e5), g.r.IntN(200), 20,
			base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, `{"id":%d}`, g.r.IntN(1e6))), 200, g.r.IntN(1e6))
	})
	add(15, func() string {
		return fmt.Sprintf("pod appserver-%s-%s restarted, std::vector<int> error, go get github.com/x/y@v1.%d.%d, price 1,234,567.89, color #%s",
			g.chars(10, lowerHx), g.chars(5, "bcdfghjklmnpqrstvwxz2456789"), g.r.IntN(10), g.r.IntN(10), g.chars(6, lowerHx))
	})
	add(15, func() string {
		return fmt.Sprintf("ISBN 978-%d-%02d-%06d-%d, order ORD-2026-%06d, invoice INV%d, semver 1.%d.%d-rc.%d", g.r.IntN(10), g.r.IntN(100),
			g.r.IntN(1e6), g.r.IntN(10), g.r.IntN(1e6), g.r.IntN(1e8), g.r.IntN(10), g.r.IntN(10), g.r.IntN(10))
	})
	add(15, func() string {
		return fmt.Sprintf(`{"request":{"remote_port":"%d","proto":"HTTP/2.0","host":"muejam.io","headers":{"User-Agent":["%s"]},`+
			`"tls":{"resumed":false,"version":772,"cipher_suite":4865,"proto":"h2","server_name":"muejam.io"}},"bytes_read":%d,`+
			`"duration":0.00%d,"size":%d,"status":200,"ts":%d.%s}`, 1024+g.r.IntN(60000), g.pick(
			"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
			"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Safari/605.1.15",
			"Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Mobile Safari/537.36 Edg/131.0.2903.112",
			"curl/8.5.0", "Go-http-client/1.1"), g.r.IntN(1e6), g.r.IntN(1e6), g.r.IntN(1e7), 1764000000+g.r.IntN(1e6), g.digits(6))
	})
	add(15, func() string {
		return g.pick("missing bearer token", "Bearer authentication required", "basic auth disabled", "see user@localhost docs",
			"@mention the author", "token= empty", "password reset link sent", "cache key=story:42 ttl=60s",
			"GC pause 0.5ms heap 128MB", "HTTP/1.1 200 OK", "Invalid credentials for user id 42")
	})
	return c
}

func encodeCorpus(c []corpusLine) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	for _, l := range c {
		if err := enc.Encode(l); err != nil {
			panic(err)
		}
	}
	return b.Bytes()
}

func readCorpus(t *testing.T, name string) []corpusLine {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var c []corpusLine
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l corpusLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		c = append(c, l)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestCorpus scrubs the labelled corpus with every kind redacted and prints recall (share
// of labelled values removed and reported under their kind) and precision (share of
// redactions that removed a labelled value).
func TestCorpus(t *testing.T) {
	path := filepath.Join("testdata", "corpus.jsonl")
	want := encodeCorpus(generateCorpus())
	if *update {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("%s is not the generator's output (err %v): run go test -run TestCorpus -update", path, err)
	}
	corpus := append(readCorpus(t, "corpus.jsonl"), readCorpus(t, "corpus-extra.jsonl")...)

	var counts [numKinds]int
	s := redactAll(t, Config{Fields: corpusFields, OnRedact: func(k Kind) { counts[k]++ }})
	var perKind [numKinds]struct{ labelled, found, tp, fp int }
	lines, negatives := 0, 0
	for _, l := range corpus {
		counts = [numKinds]int{}
		var out string
		if l.Field != "" {
			out = s.Field(l.Field, l.Text)
		} else {
			out = s.String(l.Text)
		}
		checkPrefilter(t, s, l.Text)
		lines++
		if len(l.PII) == 0 {
			negatives++
		}
		var hits [numKinds]int
		for _, p := range l.PII {
			k, ok := kindByName(p.Kind)
			if !ok {
				t.Fatalf("corpus: unknown kind %q", p.Kind)
			}
			perKind[k].labelled++
			if !strings.Contains(out, p.Value) && strings.Contains(out, "[REDACTED:"+p.Kind+"]") {
				perKind[k].found++
				hits[k]++
			} else {
				t.Errorf("missed %s %q in %q: %q", p.Kind, p.Value, l.Text, out)
			}
		}
		for k, n := range counts {
			tp := min(n, hits[k])
			perKind[k].tp += tp
			perKind[k].fp += n - tp
			if n > tp {
				t.Errorf("false alarm: %d %s redaction(s) in %q: %q", n-tp, Kind(k), l.Text, out)
			}
		}
	}
	var labelled, found, tp, fp int
	fmt.Printf("pii corpus: %d lines (%d hard negatives)\n%-18s %8s %8s %6s\n", lines, negatives, "kind", "values", "recall", "false")
	for k, r := range perKind {
		labelled, found, tp, fp = labelled+r.labelled, found+r.found, tp+r.tp, fp+r.fp
		if r.labelled > 0 || r.fp > 0 {
			fmt.Printf("%-18s %8d %7.1f%% %6d\n", Kind(k), r.labelled, 100*float64(r.found)/float64(max(r.labelled, 1)), r.fp)
		}
	}
	recall := float64(found) / float64(labelled)
	precision := float64(tp) / float64(max(tp+fp, 1))
	fmt.Printf("pii corpus: recall %.2f%% (%d/%d), precision %.2f%% (%d/%d)\n", 100*recall, found, labelled, 100*precision, tp, tp+fp)
	if lines < 500 || labelled == 0 {
		t.Errorf("corpus too small: %d lines, %d labelled values", lines, labelled)
	}
	if recall < 1 {
		t.Errorf("recall %.4f, want 1", recall)
	}
	if precision < 0.99 {
		t.Errorf("precision %.4f, want at least 0.99", precision)
	}
}
