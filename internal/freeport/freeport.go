// Package freeport hands out loopback TCP ports to the tests and benchmarks that start
// servers: ports free when asked for, and never handed to two processes of this machine at
// once.
//
// A port found free and closed again stays free only until someone binds it, and the server
// meant for it binds later. Caddy binds with SO_REUSEPORT, so when two test processes give
// their Caddys one port, both binds succeed and the kernel splits the connections between
// them: a CI run saw a breaker test's requests answered 404 by another package's Caddy. So
// every port handed out is locked, as the byte of its number in one lock file under
// os.TempDir (an fcntl record lock, which the kernel drops when the process ends), and a
// port another process holds is skipped. A process never gets a port twice either: servers
// it started earlier may still listen there, or listen again.
package freeport

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
)

var (
	mu    sync.Mutex
	locks *os.File         // the lock file, open for the life of the process
	taken = map[int]bool{} // the ports this process locked
)

// Port returns a loopback TCP port the kernel reports free, locked for this process.
func Port() (int, error) {
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ok, err := Lock(port)
		ln.Close()
		if err != nil {
			return 0, err
		}
		if ok {
			return port, nil
		}
	}
	return 0, errors.New("freeport: no free loopback port that no other process holds in 100 tries")
}

// Addr returns "127.0.0.1:PORT" for a port from Port.
func Addr() (string, error) {
	port, err := Port()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), nil
}

// Lock locks port for this process, for callers that pick their own numbers (a Valkey
// Cluster's node with its bus port). It reports false when this process or another one
// holds the port already; it does not check that the port is free.
func Lock(port int) (bool, error) {
	mu.Lock()
	defer mu.Unlock()
	if taken[port] {
		return false, nil
	}
	if locks == nil {
		f, err := os.OpenFile(filepath.Join(os.TempDir(), "muejam-edge-ports.lock"), os.O_RDWR|os.O_CREATE, 0o666)
		if err != nil {
			return false, fmt.Errorf("freeport: %w", err)
		}
		locks = f
	}
	lk := syscall.Flock_t{Type: syscall.F_WRLCK, Whence: 0, Start: int64(port), Len: 1}
	err := syscall.FcntlFlock(locks.Fd(), syscall.F_SETLK, &lk)
	if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EACCES) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("freeport: locking port %d: %w", port, err)
	}
	taken[port] = true
	return true, nil
}
