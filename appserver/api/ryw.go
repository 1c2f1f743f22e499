package api

import (
	"net/http"
	"time"

	"github.com/muejam/edge/appserver/dbrouter"
)

// SetToken hands the read-your-writes token of a write through db to the client: the
// X-Read-Your-Writes header and the ryw cookie, which lives as long as db honours the token
// (its TokenTTL). The zero Token sends nothing.
func SetToken(w http.ResponseWriter, db *dbrouter.Router, t dbrouter.Token) {
	if !t.IsZero() {
		setToken(w, db.EncodeToken(t), db.TokenTTL())
	}
}

// setToken sends the signed token v, honoured for ttl.
func setToken(w http.ResponseWriter, v string, ttl time.Duration) {
	w.Header().Set(dbrouter.TokenHeader, v)
	http.SetCookie(w, &http.Cookie{
		Name:     dbrouter.TokenCookie,
		Value:    v,
		Path:     "/",
		MaxAge:   int(ttl.Seconds()),
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	})
}
