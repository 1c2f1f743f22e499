// Package profiles serves users' public profiles and their own profile (/v1/me). A profile
// is created the first time a user id is seen (Ensure), with a generated handle the user can
// change.
//
//	GET   /v1/me               the caller's profile (created on first sight)      private
//	PATCH /v1/me               change handle, display_name, bio                   private
//	GET   /v1/users/{handle}   anyone's public profile                            public, 5 min
package profiles

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/muejam/edge/appserver/api"
	"github.com/muejam/edge/appserver/audit"
	"github.com/muejam/edge/appserver/dbrouter"
	"github.com/muejam/edge/appserver/identity"
)

// Limits of the profile fields.
const (
	MaxDisplayName = 50
	MaxBio         = 500
)

var handleRE = regexp.MustCompile(`^[A-Za-z0-9_]{3,30}$`)

// ValidHandle reports whether s has the form of a handle: 3 to 30 of [A-Za-z0-9_].
func ValidHandle(s string) bool { return handleRE.MatchString(s) }

// ErrHandleTaken answers a handle another user has, in any letter case.
var ErrHandleTaken = &api.Error{Code: "handle_taken", Message: "that handle is taken",
	Details: map[string]string{"handle": "is taken"}}

// Profile is a user's profile. UserID is shown to its owner only.
type Profile struct {
	UserID      string    `json:"user_id,omitempty"`
	Handle      string    `json:"handle"`
	DisplayName string    `json:"display_name"`
	Bio         string    `json:"bio"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// CacheTag is the cache tag of the public profile with this handle.
func CacheTag(handle string) string { return "user:" + strings.ToLower(handle) }

const columns = "user_id, handle, display_name, bio, created_at, updated_at"

// The profile of user $1, and the profile whose handle is $1 in any letter case.
const (
	byIDSQL     = "select " + columns + " from profiles where user_id = $1"
	byHandleSQL = "select " + columns + " from profiles where lower(handle) = lower($1)"
)

// Handler serves the profile routes.
type Handler struct {
	db  *dbrouter.Router
	log *zap.Logger
}

// New returns the profile handlers, reading and writing through db.
func New(db *dbrouter.Router, log *zap.Logger) *Handler {
	return &Handler{db: db, log: log}
}

// Register adds the profile routes to mux.
func (h *Handler) Register(mux api.Mux) {
	mux.Handle("GET /v1/me", api.RequireUser(api.Handle(h.log, h.getMe)))
	mux.Handle("PATCH /v1/me", api.RequireUser(api.Handle(h.log, h.patchMe)))
	mux.Handle("GET /v1/users/{handle}", api.Handle(h.log, h.getUser))
}

// Ensure returns the profile of userID, creating it with a generated handle if this is the
// first time the user is seen. It is safe under concurrency: two first requests of a user
// create one profile.
func Ensure(ctx context.Context, tx pgx.Tx, userID string) (Profile, error) {
	for range 5 {
		// do nothing on any conflict: the user's row (a concurrent first request) or the
		// generated handle (taken: try another).
		p, err := scan(tx.QueryRow(ctx, `insert into profiles (user_id, handle) values ($1, $2)
			on conflict do nothing returning `+columns, userID, generateHandle()))
		if !errors.Is(err, pgx.ErrNoRows) {
			return p, err
		}
		p, err = scan(tx.QueryRow(ctx, byIDSQL, userID))
		if !errors.Is(err, pgx.ErrNoRows) {
			return p, err
		}
	}
	return Profile{}, errors.New("profiles: no free generated handle after 5 attempts")
}

// generateHandle returns "user_" and 10 random characters of [a-z2-7].
func generateHandle() string {
	var b [6]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return "user_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))[:10]
}

// auditFields are the fields of the profile an edit's audit event compares.
func (p *Profile) auditFields() map[string]any {
	return map[string]any{"handle": p.Handle, "display_name": p.DisplayName, "bio": p.Bio}
}

func scan(row pgx.Row) (Profile, error) {
	var p Profile
	err := row.Scan(&p.UserID, &p.Handle, &p.DisplayName, &p.Bio, &p.CreatedAt, &p.UpdatedAt)
	return p, err
}

func (h *Handler) getMe(w http.ResponseWriter, r *http.Request) error {
	uid, _ := identity.User(r.Context())
	api.Private(w)
	p, err := scan(h.db.Reader(r.Context()).QueryRow(r.Context(), byIDSQL, uid))
	if errors.Is(err, pgx.ErrNoRows) {
		// First sight of this user: create the profile on the primary.
		var tok dbrouter.Token
		tok, err = h.db.WithTx(r.Context(), pgx.TxOptions{}, func(tx pgx.Tx) error {
			p, err = Ensure(r.Context(), tx, uid)
			return err
		})
		api.SetToken(w, h.db, tok)
	}
	if err != nil {
		return err
	}
	api.Write(w, r, http.StatusOK, p)
	return nil
}

// patch is the body of PATCH /v1/me; absent fields are left as they are.
type patch struct {
	Handle      *string `json:"handle"`
	DisplayName *string `json:"display_name"`
	Bio         *string `json:"bio"`
}

func (in *patch) validate() error {
	v := api.Validator{}
	if in.Handle != nil {
		v.Check(ValidHandle(*in.Handle), "handle", "must be 3 to 30 letters, digits or underscores")
	}
	v.Text("display_name", in.DisplayName, api.TextRule{Max: MaxDisplayName})
	v.Text("bio", in.Bio, api.TextRule{KeepSpace: true, Max: MaxBio, Controls: api.AnyControls})
	return v.Err()
}

func (h *Handler) patchMe(w http.ResponseWriter, r *http.Request) error {
	uid, _ := identity.User(r.Context())
	api.Private(w)
	var in patch
	if err := api.Decode(w, r, &in); err != nil {
		return err
	}
	if err := in.validate(); err != nil {
		return err
	}
	var before, after Profile
	tok, err := h.db.WithTx(r.Context(), pgx.TxOptions{}, func(tx pgx.Tx) error {
		var err error
		if before, err = Ensure(r.Context(), tx, uid); err != nil {
			return err
		}
		after, err = scan(tx.QueryRow(r.Context(), `update profiles set
				handle = coalesce($2, handle), display_name = coalesce($3, display_name),
				bio = coalesce($4, bio), updated_at = now()
			where user_id = $1 returning `+columns, uid, in.Handle, in.DisplayName, in.Bio))
		if api.IsUniqueViolation(err, "profiles_handle_key") {
			return ErrHandleTaken
		}
		if err != nil {
			return err
		}
		b, a := audit.Changes(before.auditFields(), after.auditFields())
		return audit.Record(r.Context(), tx, audit.Event{Action: "profile.edit", TargetType: "profile", TargetID: uid, Before: b, After: a})
	})
	if err != nil {
		return err
	}
	api.SetToken(w, h.db, tok)
	tags := []string{CacheTag(before.Handle)}
	if !strings.EqualFold(before.Handle, after.Handle) {
		tags = append(tags, CacheTag(after.Handle))
	}
	api.Purge(w, tags...)
	api.Write(w, r, http.StatusOK, after)
	return nil
}

func (h *Handler) getUser(w http.ResponseWriter, r *http.Request) error {
	handle := r.PathValue("handle")
	if !ValidHandle(handle) {
		return api.ErrNotFound
	}
	p, err := scan(h.db.Reader(r.Context()).QueryRow(r.Context(), byHandleSQL, handle))
	if errors.Is(err, pgx.ErrNoRows) {
		return api.ErrNotFound
	}
	if err != nil {
		return err
	}
	p.UserID = ""
	api.Public(w, api.StoryMetadata, CacheTag(p.Handle))
	api.Write(w, r, http.StatusOK, p)
	return nil
}
