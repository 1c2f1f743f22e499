package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/muejam/edge/appserver/options"
	"github.com/muejam/edge/internal/valkeyconn"
)

// config is everything the app server reads from its environment and flags: the options of
// options.Table, and what is parsed from them. Flags win over environment variables; defaults
// live in the table and nowhere else.
type config struct {
	options.Config

	primary  *pgxpool.Config
	replicas []*pgxpool.Config
	valkey   valkeyconn.Config   // without the password, which is resolved at start
	getenv   func(string) string // resolves env: secret references
}

// newConfig is the config of the options in o.
func newConfig(o options.Config, getenv func(string) string) config {
	cfg := config{Config: o, getenv: getenv}
	cfg.primary, cfg.replicas, cfg.valkey = o.Connections()
	return cfg
}

// defaultConfig is the config when no variable and no flag is set.
func defaultConfig() config { return newConfig(options.Defaults(), nil) }

// usageError is a mistake in the configuration or the command line: main prints it as one
// line and exits with status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// parseConfig reads the environment through getenv, then the flags in args.
func parseConfig(name string, args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	return parseConfigWith(name, args, getenv, stderr, nil)
}

// parseConfigWith is parseConfig for a subcommand with flags of its own, which extra, when
// not nil, adds to the flag set.
func parseConfigWith(name string, args []string, getenv func(string) string, stderr io.Writer, extra func(*flag.FlagSet)) (config, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	// Each option's value: its default, replaced by its variable when set, then by its flag.
	values := make([]string, len(options.Table))
	for i, o := range options.Table {
		values[i] = o.Default
		if v := getenv(o.Env); v != "" {
			values[i] = v
		}
		fs.StringVar(&values[i], o.Flag, values[i], o.Usage())
	}
	if extra != nil {
		extra(fs)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stderr)
			fs.PrintDefaults()
		}
		return config{}, usageError{err}
	}
	if fs.NArg() > 0 {
		return config{}, usagef("unexpected argument %q", fs.Arg(0))
	}
	var opts options.Config
	for i, o := range options.Table {
		if err := o.Parse(&opts, o, values[i]); err != nil {
			return config{}, usageError{err}
		}
	}
	return newConfig(opts, getenv), nil
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
