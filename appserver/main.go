// Command appserver serves the MueJam Library API behind MueJam Edge.
//
//	appserver [flags]          serve the API (see -h for flags and their environment variables)
//	appserver migrate [flags]  apply the embedded SQL migrations to the primary and exit
//	appserver seed [flags]     fill an empty database with a generated data set (see seed -h)
//	appserver audit [flags]    print audit events: -actor, -target TYPE[:ID], -since, -limit
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(exitCode(run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr), os.Stderr))
}

// exitCode prints err as one line and maps it to the exit status: 2 for a usage or
// configuration error, 1 for any other failure.
func exitCode(err error, stderr io.Writer) int {
	var ue usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintln(stderr, "appserver:", firstLine(err.Error()))
		return 2
	default:
		fmt.Fprintln(stderr, "appserver:", firstLine(err.Error()))
		return 1
	}
}

// run is the whole program: it returns when ctx is cancelled (SIGINT, SIGTERM) and the
// server has drained, or on the first error.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	name := "appserver"
	if len(args) > 0 && args[0] == "migrate" {
		cfg, err := parseConfig("appserver migrate", args[1:], getenv, stderr)
		if err != nil {
			return err
		}
		return runMigrate(ctx, cfg, stdout)
	}
	if len(args) > 0 && args[0] == "seed" {
		return runSeed(ctx, args[1:], getenv, stdout, stderr)
	}
	if len(args) > 0 && args[0] == "audit" {
		return runAudit(ctx, args[1:], getenv, stdout, stderr)
	}
	cfg, err := parseConfig(name, args, getenv, stderr)
	if err != nil {
		return err
	}
	return serve(ctx, cfg, stdout)
}
