package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat: 100 on every Linux
// architecture Go supports (sysconf(_SC_CLK_TCK) reports the same constant).
const clockTicks = 100

// parseProcStat returns utime+stime, in clock ticks, from the text of /proc/PID/stat. The
// command name (field 2) is in parentheses and may itself contain spaces and parentheses, so
// fields are counted from the last ')'.
func parseProcStat(stat string) (int64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("proc stat: no ')' in %q", stat)
	}
	// After ")": field 3 (state) is index 0; utime is field 14, stime field 15.
	f := strings.Fields(stat[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("proc stat: %d fields after the command name, want at least 13", len(f))
	}
	utime, err := strconv.ParseInt(f[11], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("proc stat utime: %w", err)
	}
	stime, err := strconv.ParseInt(f[12], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("proc stat stime: %w", err)
	}
	return utime + stime, nil
}

// cpuTicks reads utime+stime of every thread of process pid.
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	return parseProcStat(string(b))
}

// cpuMicrosPerRequest converts a utime+stime delta over requests into µs of CPU per request.
func cpuMicrosPerRequest(ticks, requests int64) float64 {
	if requests <= 0 {
		return 0
	}
	return float64(ticks) * 1e6 / clockTicks / float64(requests)
}
