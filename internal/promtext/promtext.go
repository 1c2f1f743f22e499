// Package promtext reads what a Prometheus /metrics endpoint serves (the text exposition
// format): the benchmark harness and the process tests use it to read counters of bin/caddy
// and bin/appserver.
package promtext

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Fetch returns the text of http://addr/metrics.
func Fetch(ctx context.Context, addr string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return "", err
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s/metrics: status %d", addr, resp.StatusCode)
	}
	return string(body), nil
}

// Sum adds up the samples of the series called name (a histogram's name_count is one)
// whose line contains labels (e.g. `node="replica`), or of all of them when labels is empty.
func Sum(text, name, labels string) float64 {
	var sum float64
	for line := range strings.Lines(text) {
		line = strings.TrimSuffix(line, "\n")
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (rest != "" && rest[0] != '{' && rest[0] != ' ') || !strings.Contains(rest, labels) {
			continue
		}
		f := strings.Fields(line)
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
			sum += v
		}
	}
	return sum
}
