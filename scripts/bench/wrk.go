package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// WrkResult is what one wrk run reports.
type WrkResult struct {
	Requests     int64   `json:"requests"`
	Seconds      float64 `json:"seconds"`
	RPS          float64 `json:"rps"`
	P50ms        float64 `json:"p50_ms"`
	P99ms        float64 `json:"p99_ms"`
	Non2xx       int64   `json:"non_2xx_3xx,omitempty"`
	SocketErrors int64   `json:"socket_errors,omitempty"`
}

// parseWrk reads the output of `wrk --latency`.
func parseWrk(out string) (WrkResult, error) {
	var r WrkResult
	var haveP50, haveP99, haveReq, haveRPS bool
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 2 && (f[0] == "50%" || f[0] == "99%"):
			d, err := parseWrkDuration(f[1])
			if err != nil {
				return r, err
			}
			if f[0] == "50%" {
				r.P50ms, haveP50 = d, true
			} else {
				r.P99ms, haveP99 = d, true
			}
		case len(f) >= 4 && f[1] == "requests" && f[2] == "in":
			n, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return r, fmt.Errorf("wrk requests %q: %w", f[0], err)
			}
			sec, err := parseWrkDuration(strings.TrimSuffix(f[3], ","))
			if err != nil {
				return r, err
			}
			r.Requests, r.Seconds, haveReq = n, sec/1000, true
		case len(f) == 2 && f[0] == "Requests/sec:":
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				return r, fmt.Errorf("wrk requests/sec %q: %w", f[1], err)
			}
			r.RPS, haveRPS = v, true
		case strings.HasPrefix(sc.Text(), "  Non-2xx or 3xx responses:"):
			n, err := strconv.ParseInt(f[len(f)-1], 10, 64)
			if err != nil {
				return r, fmt.Errorf("wrk non-2xx %q: %w", f[len(f)-1], err)
			}
			r.Non2xx = n
		case len(f) > 2 && f[0] == "Socket" && f[1] == "errors:":
			// Socket errors: connect 0, read 0, write 0, timeout 0
			for i := 3; i < len(f); i += 2 {
				n, err := strconv.ParseInt(strings.TrimSuffix(f[i], ","), 10, 64)
				if err != nil {
					return r, fmt.Errorf("wrk socket errors %q: %w", sc.Text(), err)
				}
				r.SocketErrors += n
			}
		}
	}
	if !haveP50 || !haveP99 || !haveReq || !haveRPS {
		return r, errors.New("wrk output lacks the latency distribution, request count or Requests/sec (was --latency given?)")
	}
	return r, nil
}

// parseWrkDuration converts wrk's "812.00us", "1.23ms", "2.00s" or "1.00m" to milliseconds.
func parseWrkDuration(s string) (float64, error) {
	units := []struct {
		suffix string
		ms     float64
	}{{"us", 1e-3}, {"ms", 1}, {"s", 1e3}, {"m", 60e3}, {"h", 3600e3}}
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := strconv.ParseFloat(num, 64)
			if err != nil {
				return 0, fmt.Errorf("wrk duration %q: %w", s, err)
			}
			return v * u.ms, nil
		}
	}
	return 0, fmt.Errorf("wrk duration %q: no unit", s)
}

// wrkLoad is how wrk is run: one thread, a fixed number of connections, bounded in time.
type wrkLoad struct {
	Threads     int    `json:"threads"`
	Connections int    `json:"connections"`
	CPU         string `json:"cpu,omitempty"` // taskset CPU list, empty when not pinned
}

// run loads url for d, sending headers ("Name: value") on every request and, when script is
// set, running that wrk Lua script (wrk -s: Scenario.Keys), and parses the result. wrk stops
// by itself after d; the context is a backstop.
func (w wrkLoad) run(ctx context.Context, url string, d time.Duration, headers []string, script string) (WrkResult, error) {
	ctx, cancel := context.WithTimeout(ctx, d+15*time.Second)
	defer cancel()
	args := []string{"wrk", "-t" + strconv.Itoa(w.Threads), "-c" + strconv.Itoa(w.Connections),
		"-d" + strconv.Itoa(int(d.Round(time.Second)/time.Second)) + "s", "--latency", "--timeout", "2s"}
	for _, h := range headers {
		args = append(args, "-H", h)
	}
	if script != "" {
		args = append(args, "-s", script)
	}
	args = append(args, url)
	if w.CPU != "" {
		args = append([]string{"taskset", "-c", w.CPU}, args...)
	}
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return WrkResult{}, fmt.Errorf("%s: %w\n%s", strings.Join(args, " "), err, out)
	}
	r, err := parseWrk(string(out))
	if err != nil {
		return r, fmt.Errorf("%w\n%s", err, out)
	}
	return r, nil
}

// ensureWrk installs Debian's wrk when it is missing: apt-get update, then install, as root or
// through sudo.
func ensureWrk(ctx context.Context, log io.Writer) error {
	if _, err := exec.LookPath("wrk"); err == nil {
		return nil
	}
	fmt.Fprintln(log, "bench: wrk is missing; installing Debian's wrk")
	var prefix []string
	if os.Geteuid() != 0 {
		if _, err := exec.LookPath("sudo"); err != nil {
			return errors.New("wrk is missing and this is not root and has no sudo: apt-get install wrk, then run again")
		}
		prefix = []string{"sudo"}
	}
	for _, args := range [][]string{
		{"apt-get", "update", "-qq"},
		{"env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-qq", "--no-install-recommends", "wrk"},
	} {
		args = append(prefix, args...)
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s: %w", strings.Join(args, " "), err)
		}
	}
	_, err := exec.LookPath("wrk")
	return err
}
