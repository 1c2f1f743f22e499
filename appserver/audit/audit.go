// Package audit keeps the audit log of the API: every mutation (a story published, a user
// blocked, a shelf renamed, ...) writes an event in the transaction of the change, so there
// is no event without its change and no change without its event. Events land in the
// append-only, monthly partitioned table audit_events (migration 0005) and, once the request
// succeeded, in the log stream "audit" (one JSON line an event, for shipping).
//
// An event says who (the user the edge authenticated), what (action and target), the
// outcome, the request id (reqid), when, from where (the client's address pseudonymized
// with the logs' keyed HMAC, or nothing without a key) and, for edits, the changed fields
// before and after.
//
// Authors read their own events with GET /v1/me/activity; operators with Query (the
// appserver audit subcommand) or SQL (docs/operators.md, "Audit log").
package audit

import (
	"context"
	"encoding/json"
	"reflect"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/muejam/edge/appserver/identity"
	"github.com/muejam/edge/appserver/reqid"
)

// OutcomeSuccess is the outcome of a change that committed: the only kind the table holds,
// since a change that fails rolls its event back with it.
const OutcomeSuccess = "success"

// Event is what a handler records of one change.
type Event struct {
	Action     string // dotted, resource first: story.publish, shelf.rename, user.block
	TargetType string // story, chapter, user, shelf, whisper, profile
	TargetID   string
	// Before and After are, for an edit, the fields that changed (see Changes); nil
	// otherwise.
	Before, After map[string]any
}

// Target names what an event is about.
type Target struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

// Entry is a stored event.
type Entry struct {
	ID        int64           `json:"id"`
	At        time.Time       `json:"at"`
	Actor     string          `json:"actor"`
	Action    string          `json:"action"`
	Target    Target          `json:"target"`
	Outcome   string          `json:"outcome"`
	RequestID string          `json:"request_id"`
	Client    *string         `json:"client,omitempty"`
	Before    json.RawMessage `json:"before,omitempty"`
	After     json.RawMessage `json:"after,omitempty"`
}

// Changes returns the fields whose values differ between before and after, as the
// Before and After of an edit's Event; nil maps when nothing changed.
func Changes(before, after map[string]any) (b, a map[string]any) {
	for k, av := range after {
		bv, ok := before[k]
		if ok && reflect.DeepEqual(bv, av) {
			continue
		}
		if b == nil {
			b, a = map[string]any{}, map[string]any{}
		}
		b[k], a[k] = bv, av
	}
	return b, a
}

const insertSQL = `insert into audit_events
	(actor, action, target_type, target_id, outcome, request_id, client, before, after)
	values ($1, $2, $3, $4, $5, $6, $7, $8, $9) returning id, at`

// Record writes ev in tx, the transaction of the change, with the actor (identity.User),
// the request id and the client's address of ctx. Behind Recorder.Middleware the event is
// also logged once the request succeeded.
func Record(ctx context.Context, tx pgx.Tx, ev Event) error {
	e := Entry{
		Action:    ev.Action,
		Target:    Target{Type: ev.TargetType, ID: ev.TargetID},
		Outcome:   OutcomeSuccess,
		RequestID: reqid.ID(ctx),
	}
	e.Actor, _ = identity.User(ctx)
	if e.RequestID == "" {
		e.RequestID = reqid.New()
	}
	p := pendingFrom(ctx)
	if info := reqid.FromContext(ctx); info != nil && p != nil {
		e.Client = p.rec.pseudonym(info.Client)
	}
	var err error
	if e.Before, err = marshal(ev.Before); err != nil {
		return err
	}
	if e.After, err = marshal(ev.After); err != nil {
		return err
	}
	if err := tx.QueryRow(ctx, insertSQL, e.Actor, e.Action, e.Target.Type, e.Target.ID, e.Outcome,
		e.RequestID, e.Client, e.Before, e.After).Scan(&e.ID, &e.At); err != nil {
		return err
	}
	if p != nil {
		p.add(tx, e)
	}
	return nil
}

// marshal is m as JSON, nil for a nil map.
func marshal(m map[string]any) (json.RawMessage, error) {
	if m == nil {
		return nil, nil
	}
	return json.Marshal(m)
}
