package logbuffer

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/logging" // the file writer

	"github.com/muejam/edge/internal/adapttest"
	"github.com/muejam/edge/internal/testenv"
)

func TestCaddyfileAdapt(t *testing.T) { adapttest.Run(t) }

// open provisions a buffered writer over a file writer of path and opens it.
func open(t *testing.T, path string, size int64, interval time.Duration) io.WriteCloser {
	t.Helper()
	w := &Writer{
		WrappedRaw:    json.RawMessage(fmt.Sprintf(`{"output":"file","filename":%q,"roll":false}`, path)),
		Size:          size,
		FlushInterval: caddy.Duration(interval),
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := w.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	out, err := w.OpenWriter()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// contents returns the file's contents ("" when it does not exist yet).
func contents(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

// TestWritesWhenFullAndOnClose checks that lines stay in the buffer until it is full, that a
// line that does not fit writes the buffer first, and that Close writes the rest, in order.
func TestWritesWhenFullAndOnClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	w := open(t, path, 1024, time.Hour)
	var want bytes.Buffer
	line := func(i int) {
		l := fmt.Sprintf(`{"msg":"handled request","n":%d,"pad":"%s"}`+"\n", i, strings.Repeat("x", 40))
		want.WriteString(l)
		if _, err := w.Write([]byte(l)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 10 { // about 700 bytes: they fit
		line(i)
	}
	if got := contents(t, path); got != "" {
		t.Fatalf("written before the buffer was full: %q", got)
	}
	for i := 10; i < 20; i++ {
		line(i)
	}
	got := contents(t, path)
	if got == "" || !strings.HasPrefix(want.String(), got) {
		t.Fatalf("after 1.4 KiB into a 1 KiB buffer the file holds %d bytes, want a prefix of the lines", len(got))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := contents(t, path); got != want.String() {
		t.Fatalf("after Close the file holds %d bytes, want all %d in order", len(got), want.Len())
	}
}

// TestWritesEveryInterval checks, on a fake clock, that a line waits at most flush_interval.
func TestWritesEveryInterval(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	synctest.Test(t, func(t *testing.T) {
		w := open(t, path, DefaultSize, 500*time.Millisecond)
		if _, err := w.Write([]byte("one\n")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(400 * time.Millisecond)
		synctest.Wait()
		if got := contents(t, path); got != "" {
			t.Errorf("after 400ms of a 500ms interval the file holds %q", got)
		}
		time.Sleep(200 * time.Millisecond)
		synctest.Wait()
		if got := contents(t, path); got != "one\n" {
			t.Errorf("after 600ms the file holds %q, want the line", got)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	})
}

// TestCaddyfileErrors checks that bad options fail with the file and line.
func TestCaddyfileErrors(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"no output", "buffered {\n\tsize 1KiB\n}", "output is required"},
		{"unknown option", "buffered {\n\toutput stderr\n\tflush 1s\n}", `unknown option "flush"`},
		{"bad size", "buffered {\n\toutput stderr\n\tsize lots\n}", `size: "lots" is not a positive size`},
		{"bad interval", "buffered {\n\toutput stderr\n\tflush_interval -1s\n}", `flush_interval: "-1s" is not a positive duration`},
		{"unknown writer", "buffered {\n\toutput nowhere\n}", "nowhere"},
		{"argument", "buffered stderr", "wrong argument count"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := caddyfile.NewTestDispenser(tc.in)
			err := new(Writer).UnmarshalCaddyfile(d)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "Testfile:") {
				t.Errorf("error %v, want one with %q at Testfile:line", err, tc.want)
			}
		})
	}
	if err := new(Writer).Provision(caddy.Context{}); err == nil || !strings.Contains(err.Error(), "output is required") {
		t.Errorf("Provision without output: %v", err)
	}
}

// TestCaddyFlushesOnStop runs bin/caddy with an access log through a buffered file writer
// that never flushes by time: the requests' lines are not in the file while Caddy runs, and
// all of them are once it has stopped on SIGTERM.
func TestCaddyFlushesOnStop(t *testing.T) {
	dir := t.TempDir()
	addr, logFile := testenv.FreeAddr(t), filepath.Join(dir, "access.log")
	cfg := fmt.Sprintf(`{
	admin off
	persist_config off
}

http://%s {
	log {
		output buffered {
			output file %s
			flush_interval 1h
		}
		format json
	}
	respond "ok"
}
`, addr, logFile)
	p := testenv.StartCaddy(t, nil, cfg, "caddyfile")
	testenv.WaitHTTP(t, "http://"+addr+"/ready")
	const n = 50
	for i := range n {
		resp, err := http.Get(fmt.Sprintf("http://%s/req-%d", addr, i))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if got := strings.Count(contents(t, logFile), "/req-"); got != 0 {
		t.Errorf("%d request lines written while Caddy runs, want them buffered", got)
	}
	p.Stop(t)
	got := contents(t, logFile)
	for i := range n {
		if !strings.Contains(got, fmt.Sprintf(`"uri":"/req-%d"`, i)) {
			t.Errorf("the line of /req-%d is missing after Caddy stopped", i)
		}
	}
}
