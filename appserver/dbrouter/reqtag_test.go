package dbrouter

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/muejam/edge/appserver/reqid"
)

func TestTaggedTx(t *testing.T) {
	var ctx context.Context
	h := reqid.Middleware(nil, nil)(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { ctx = r.Context() }))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	id := reqid.ID(ctx)
	for _, c := range []struct {
		ctx  context.Context
		opts pgx.TxOptions
		want string
	}{
		{context.Background(), pgx.TxOptions{}, ""},
		{ctx, pgx.TxOptions{}, "begin; set local application_name = 'request_id=" + id + "'"},
		{ctx, pgx.TxOptions{IsoLevel: pgx.Serializable, AccessMode: pgx.ReadOnly, DeferrableMode: pgx.Deferrable},
			"begin isolation level serializable read only deferrable; set local application_name = 'request_id=" + id + "'"},
		{ctx, pgx.TxOptions{BeginQuery: "begin priority high"}, "begin priority high"},
	} {
		if got := taggedTx(c.ctx, c.opts).BeginQuery; got != c.want {
			t.Errorf("%+v: %q, want %q", c.opts, got, c.want)
		}
	}
}
