package pii

import "testing"

// Typical log lines: one with no personal data (the common case), one dense with it.
const (
	cleanLine = `2026-11-25T20:09:46.123456789Z INFO http.log.access handled request method=GET ` +
		`uri=/v1/stories/42/chapters?limit=20&cursor=eyAiaWQiOiA0MiB9 status=200 size=5120 ` +
		`duration=12.5ms request_id=550e8400-e29b-41d4-a716-446655440000 upstream=appserver:8081 ` +
		`proto=HTTP/2.0 user_agent="Mozilla/5.0 (X11; Linux x86_64) Firefox/132.0" version=v2.11.9`
	denseLine = `login alice@example.com from 203.0.113.7 card 4111 1111 1111 1111 phone +1 (415) 555-2671 ` +
		`ssn 123-45-6789 iban DE89370400440532013000 Authorization: Bearer 0a1b2c3d4e5f6g7h8i9j ` +
		`uri=/cb?code=Xy12&state=ok&password=hunter2 dsn=postgres://app:s3cr3t@db:5432/x key=AKIAIOSFODNN7EXAMPLE ` +
		`jwt=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl ip6=2001:db8::1`
	cleanJSON = `{"level":"info","ts":"2026-11-25T20:09:46.123456789Z","logger":"http.log.access",` +
		`"msg":"handled request","request":{"method":"GET","uri":"/v1/stories/42?limit=20","proto":"HTTP/2.0",` +
		`"headers":{"Accept":["application/json"]}},"duration":0.0125,"size":5120,"status":200,` +
		`"request_id":"550e8400-e29b-41d4-a716-446655440000"}`
)

func benchString(b *testing.B, line string) {
	s := redactAll(b, Config{})
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	for b.Loop() {
		s.String(line)
	}
}

func BenchmarkStringClean(b *testing.B) { benchString(b, cleanLine) }
func BenchmarkStringDense(b *testing.B) { benchString(b, denseLine) }

func BenchmarkJSONClean(b *testing.B) {
	s := redactAll(b, Config{})
	doc := []byte(cleanJSON)
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.JSON(doc); err != nil {
			b.Fatal(err)
		}
	}
}
