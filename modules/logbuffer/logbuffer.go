// Package logbuffer is a Caddy log writer, caddy.logging.writers.buffered, that batches the
// lines of another writer (stderr, a file, the network, ...) in memory and writes them
// together, instead of one write system call per line: at thousands of requests a second,
// an access log's writes are a few percent of the edge's CPU.
//
// A line waits at most flush_interval (1s by default) before it is written; the buffer is
// written sooner when it is full and when Caddy unloads a config (a reload, or stopping on
// SIGTERM, SIGINT or the admin API's /stop). Lines still in
// the buffer are lost if the process is killed without a chance to close it (SIGKILL, an
// out-of-memory kill): up to flush_interval of logs. Use it for access logs; leave the
// default log, which carries panics and fatal errors, unbuffered.
package logbuffer

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/muejam/edge/internal/cfgarg"
)

func init() {
	caddy.RegisterModule(Writer{})
}

// Defaults of Writer.
const (
	DefaultSize          = 256 << 10
	DefaultFlushInterval = time.Second
)

// Writer is a log writer that buffers the lines written to another writer and writes them
// in batches: when the buffer is full, every FlushInterval, and when Caddy unloads a
// config.
type Writer struct {
	// The writer the lines go to, as a module of caddy.logging.writers (stderr, stdout,
	// file, net, ...), its name in the "output" key, as in a log's "writer". Required.
	WrappedRaw json.RawMessage `json:"writer,omitempty" caddy:"namespace=caddy.logging.writers inline_key=output"`

	// Size is the buffer's size in bytes; a line that does not fit writes the buffer first.
	// Default: 256 KiB.
	Size int64 `json:"size,omitempty"`

	// FlushInterval is the longest a line waits in the buffer. Default: 1s.
	FlushInterval caddy.Duration `json:"flush_interval,omitempty"`

	wrapped caddy.WriterOpener
}

// CaddyModule returns the Caddy module information.
func (Writer) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "caddy.logging.writers.buffered",
		New: func() caddy.Module { return new(Writer) },
	}
}

// Provision loads the wrapped writer and applies the defaults.
func (w *Writer) Provision(ctx caddy.Context) error {
	if w.WrappedRaw == nil {
		return errors.New("buffered: output is required (the writer the lines go to)")
	}
	if w.Size < 0 || w.FlushInterval < 0 {
		return fmt.Errorf("buffered: size (%d) and flush_interval (%s) cannot be negative", w.Size, time.Duration(w.FlushInterval))
	}
	if w.Size == 0 {
		w.Size = DefaultSize
	}
	if w.FlushInterval == 0 {
		w.FlushInterval = caddy.Duration(DefaultFlushInterval)
	}
	val, err := ctx.LoadModule(w, "WrappedRaw")
	if err != nil {
		return fmt.Errorf("buffered: loading output: %v", err)
	}
	w.wrapped = val.(caddy.WriterOpener)
	return nil
}

// String describes the writer for humans.
func (w *Writer) String() string { return "buffered " + w.wrapped.String() }

// WriterKey identifies the writer: loggers that write to the same buffered output share one
// buffer.
func (w *Writer) WriterKey() string {
	return fmt.Sprintf("buffered:%d:%s:%s", w.Size, time.Duration(w.FlushInterval), w.wrapped.WriterKey())
}

// OpenWriter opens the wrapped writer and returns a buffer in front of it.
func (w *Writer) OpenWriter() (io.WriteCloser, error) {
	out, err := w.wrapped.OpenWriter()
	if err != nil {
		return nil, err
	}
	b := &bufferedWriter{
		// writeOnly: syncing the buffer writes it, and never fsyncs the output.
		buf: &zapcore.BufferedWriteSyncer{WS: zapcore.AddSync(writeOnly{out}), Size: int(w.Size), FlushInterval: time.Duration(w.FlushInterval)},
		out: out,
	}
	openWriters.Lock()
	openWriters.m[b] = struct{}{}
	openWriters.Unlock()
	return b, nil
}

// Cleanup writes the buffer of every open buffered writer. Caddy cleans up a config's
// modules when it unloads the config, on a reload and when it stops, but it does not close
// log writers then (an open writer is shared by the configs that use it): this is what
// writes the last lines before the process exits.
func (w *Writer) Cleanup() error {
	openWriters.Lock()
	defer openWriters.Unlock()
	var errs []error
	for b := range openWriters.m {
		errs = append(errs, b.buf.Sync())
	}
	return errors.Join(errs...)
}

// openWriters holds the buffered writers opened and not closed, for Cleanup.
var openWriters = struct {
	sync.Mutex
	m map[*bufferedWriter]struct{}
}{m: make(map[*bufferedWriter]struct{})}

// bufferedWriter is an open Writer.
type bufferedWriter struct {
	buf *zapcore.BufferedWriteSyncer
	out io.Closer
}

// Write adds p to the buffer, writing the buffer first when p does not fit.
func (b *bufferedWriter) Write(p []byte) (int, error) { return b.buf.Write(p) }

// Close writes the buffer, stops the flushing and closes the wrapped writer.
func (b *bufferedWriter) Close() error {
	openWriters.Lock()
	delete(openWriters.m, b)
	openWriters.Unlock()
	return errors.Join(b.buf.Stop(), b.out.Close())
}

// writeOnly hides the Sync method of a writer that has one (a file's is fsync).
type writeOnly struct{ io.Writer }

// UnmarshalCaddyfile sets up the writer from Caddyfile tokens. Syntax:
//
//	output buffered {
//	    output <writer> [<args...>] [{
//	        <writer options>
//	    }]
//	    size           <bytes>     # default 256KiB
//	    flush_interval <duration>  # default 1s
//	}
func (w *Writer) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume writer name
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "output":
			if !d.NextArg() {
				return d.ArgErr()
			}
			name := d.Val()
			var wo caddy.WriterOpener
			// The standard writers are in package caddy, without a Caddyfile unmarshaler:
			// Caddy's log directive makes them the same way.
			switch name {
			case "stdout":
				wo = caddy.StdoutWriter{}
			case "stderr":
				wo = caddy.StderrWriter{}
			case "discard":
				wo = caddy.DiscardWriter{}
			default:
				unm, err := caddyfile.UnmarshalModule(d, "caddy.logging.writers."+name)
				if err != nil {
					return err
				}
				var ok bool
				if wo, ok = unm.(caddy.WriterOpener); !ok {
					return d.Errf("module caddy.logging.writers.%s (%T) is not a log writer", name, unm)
				}
			}
			w.WrappedRaw = caddyconfig.JSONModuleObject(wo, "output", name, nil)
		case "size":
			n, err := cfgarg.Size(d)
			if err != nil {
				return err
			}
			w.Size = n
		case "flush_interval":
			dur, err := cfgarg.Duration(d)
			if err != nil {
				return err
			}
			w.FlushInterval = dur
		default:
			return d.Errf("buffered: unknown option %q", d.Val())
		}
	}
	if w.WrappedRaw == nil {
		return d.Err("buffered: output is required (the writer the lines go to)")
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner     = (*Writer)(nil)
	_ caddy.CleanerUpper    = (*Writer)(nil)
	_ caddy.WriterOpener    = (*Writer)(nil)
	_ caddyfile.Unmarshaler = (*Writer)(nil)
	_ io.WriteCloser        = (*bufferedWriter)(nil)
)
