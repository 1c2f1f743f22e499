package audit

import (
	"context"
	"net/http"
	"net/netip"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/muejam/edge/appserver/reqid"
	"github.com/muejam/edge/internal/pii"
)

// Recorder logs the events of the requests that succeeded and pseudonymizes client
// addresses.
type Recorder struct {
	log    *zap.Logger
	pseudo *pii.Scrubber // nil without a key: no address is stored
}

// NewRecorder returns a Recorder logging to log (name it "audit"). With a pseudonymKey (at
// least 16 bytes: the logs' PII pseudonym key) events store the client's address as the
// logs' [ip:HEX] token; without one they store no address.
func NewRecorder(log *zap.Logger, pseudonymKey string) (*Recorder, error) {
	rec := &Recorder{log: log}
	if pseudonymKey != "" {
		s, err := pii.New(pii.Config{Modes: map[string]string{"ip": "pseudonym"}, PseudonymKey: pseudonymKey})
		if err != nil {
			return nil, err
		}
		rec.pseudo = s
	}
	return rec, nil
}

// pseudonym is addr as stored: its pseudonym, loopback and unspecified addresses (no
// personal data) as they are, nil without a key or an address.
func (rec *Recorder) pseudonym(addr netip.Addr) *string {
	if rec.pseudo == nil || !addr.IsValid() {
		return nil
	}
	s := rec.pseudo.String(addr.String())
	return &s
}

// Middleware collects the events each request records and logs them after the handler
// returns, when the response's status (reqid.Info) is below 400: a request that failed
// committed nothing. Put it inside reqid.Middleware.
func (rec *Recorder) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := &pending{rec: rec}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), pendingKey{}, p)))
		if info := reqid.FromContext(r.Context()); info != nil && info.Status >= 400 {
			return
		}
		for _, e := range p.committed() {
			rec.Log(e)
		}
	})
}

// Log writes e to the log stream: one line, message "audit event".
func (rec *Recorder) Log(e Entry) {
	fields := []zap.Field{
		zap.Int64("id", e.ID), zap.Time("at", e.At), zap.String("actor", e.Actor),
		zap.String("action", e.Action), zap.String("target_type", e.Target.Type),
		zap.String("target_id", e.Target.ID), zap.String("outcome", e.Outcome),
		zap.String("request_id", e.RequestID),
	}
	if e.Client != nil {
		fields = append(fields, zap.String("client", *e.Client))
	}
	if e.Before != nil {
		fields = append(fields, zap.Any("before", e.Before), zap.Any("after", e.After))
	}
	rec.log.Info("audit event", fields...)
}

type pendingKey struct{}

func pendingFrom(ctx context.Context) *pending {
	p, _ := ctx.Value(pendingKey{}).(*pending)
	return p
}

// pending are the events a request recorded, with their transactions.
type pending struct {
	rec     *Recorder
	entries []pendingEntry
}

type pendingEntry struct {
	tx pgx.Tx
	e  Entry
}

func (p *pending) add(tx pgx.Tx, e Entry) { p.entries = append(p.entries, pendingEntry{tx, e}) }

// committed drops the events of transactions that were retried (dbrouter.WithTx runs its
// function again, in a new transaction, after a serialization failure): an event whose
// action and target a later transaction recorded again.
func (p *pending) committed() []Entry {
	type key struct{ action, typ, id string }
	last := map[key]pgx.Tx{}
	for _, pe := range p.entries {
		last[key{pe.e.Action, pe.e.Target.Type, pe.e.Target.ID}] = pe.tx
	}
	var out []Entry
	for _, pe := range p.entries {
		if last[key{pe.e.Action, pe.e.Target.Type, pe.e.Target.ID}] == pe.tx {
			out = append(out, pe.e)
		}
	}
	return out
}
