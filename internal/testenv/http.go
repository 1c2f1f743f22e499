package testenv

import (
	"io"
	"net/http"
	"testing"
)

// Fetch sends a request without a body, with the header pairs (name, value, ...) added,
// through client, and returns the response and its body, read whole (the response's Body is
// closed). It fails the test when no whole response arrives.
func Fetch(t testing.TB, client *http.Client, method, url string, headers ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}
