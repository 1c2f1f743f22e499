package main

import (
	"context"
	"encoding/json"
	"flag"
	"io"
	"time"

	"github.com/muejam/edge/appserver/audit"
)

// auditFlags are the filters of `appserver audit`.
type auditFlags struct {
	filter audit.Filter
	since  time.Duration
}

func (o *auditFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&o.filter.Actor, "actor", "", "only the events of this user id")
	fs.StringVar(&o.filter.Target, "target", "", "only the events on this target: TYPE (story) or TYPE:ID (story:42)")
	fs.DurationVar(&o.since, "since", 24*time.Hour, "only the events of this last period")
	fs.IntVar(&o.filter.Limit, "limit", 100, "at most this many events, newest first")
}

// runAudit is `appserver audit`: it prints the audit events the filters select, newest
// first, one JSON object a line, from the primary.
func runAudit(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var o auditFlags
	cfg, err := parseConfigWith("appserver audit", args, getenv, stderr, o.register)
	if err != nil {
		return err
	}
	if o.filter.Limit < 1 {
		return usagef("invalid -limit %d: want 1 or more", o.filter.Limit)
	}
	o.filter.Since = time.Now().Add(-o.since)
	pool, err := primaryPool(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	entries, err := audit.Query(ctx, pool, o.filter)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	for _, e := range entries {
		if err := enc.Encode(e); err != nil {
			return err
		}
	}
	return nil
}
