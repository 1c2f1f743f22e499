package freeport

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// TestNoPortTwice: a port is handed out once in a process, and another process can neither
// get it from Port nor Lock it while this one lives.
func TestNoPortTwice(t *testing.T) {
	if port := os.Getenv("FREEPORT_CHILD_LOCK"); port != "" {
		// The other process: report whether it could lock the parent's port, and what it got
		// from Port meanwhile.
		p, _ := strconv.Atoi(port)
		ok, err := Lock(p)
		got, perr := Port()
		fmt.Printf("lock=%v err=%v port=%d perr=%v\n", ok, err, got, perr)
		return
	}
	seen := map[int]bool{}
	for range 200 {
		p, err := Port()
		if err != nil {
			t.Fatal(err)
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
	}
	var held int
	for p := range seen {
		held = p
		break
	}
	if ok, err := Lock(held); ok || err != nil {
		t.Fatalf("Lock(%d) of a port this process holds: %v, %v; want false", held, ok, err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestNoPortTwice$")
	cmd.Env = append(os.Environ(), "FREEPORT_CHILD_LOCK="+strconv.Itoa(held))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	var ok bool
	var lerr, perr string
	var got int
	line := out[:strings.IndexByte(string(out), '\n')+1]
	if _, err := fmt.Sscanf(string(line), "lock=%t err=%s port=%d perr=%s", &ok, &lerr, &got, &perr); err != nil {
		t.Fatalf("child said %q: %v", out, err)
	}
	if ok || lerr != "<nil>" {
		t.Errorf("another process locked port %d this one holds (lock=%v err=%s)", held, ok, lerr)
	}
	if perr != "<nil>" || got == 0 || seen[got] {
		t.Errorf("another process got port %d (err %s) from Port; this one holds %d ports", got, perr, len(seen))
	}
}
