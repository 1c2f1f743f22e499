// Package sharedlist serves lists computed once for everyone and filtered per viewer: the
// discovery feeds, search results and whisper feeds.
//
// A page of such a list is loaded as an anonymous reader sees it (Load, LoadPage), kept in
// the app's cache manager under the same tags as the edge keeps its answer, and filtered per
// viewer at answer time with the BlockIndex (itself cached, purged by block and unblock).
// Anonymous readers, and signed-in ones who block nobody (as the edge says:
// modules/viewerfilter), get the public answer, which the edge stores once; other signed-in
// readers get a private answer, which no cache stores, computed without a query of its own:
// the shared page less the authors they blocked (Serve).
package sharedlist

import (
	"context"
	"net/http"
	"slices"
	"time"

	"github.com/muejam/edge/appserver/api"
	"github.com/muejam/edge/appserver/cache"
	"github.com/muejam/edge/appserver/dbrouter"
	"github.com/muejam/edge/appserver/identity"
	"github.com/muejam/edge/appserver/social"
	"github.com/muejam/edge/internal/blockers"
)

// maxExtraPages bounds how many shared pages of api.MaxLimit items after the first a
// viewer's answer reads to make up for the items their blocks hid; the answer is shorter
// than the limit only when that many items in a row are hidden, and its cursor goes on from
// there.
const maxExtraPages = 2

// blockIndexKey is the key of the BlockIndex in the cache manager.
const blockIndexKey = "social:block-index"

// Shared is what handlers of answers computed for everyone need: the cache manager, the
// database, and how long the cache keeps an answer of each kind when no purge drops it
// sooner (the BlockIndex: as long as a feed).
type Shared struct {
	Cache *cache.Manager
	DB    *dbrouter.Router
	TTL   map[api.Resource]time.Duration
	// Blockers, when not nil, is where block adds its user before the block commits, for
	// the edge to know who blocks anyone (internal/blockers).
	Blockers *blockers.Writer
}

// Viewer returns who asks: the request's user and, from the cached BlockIndex, the authors
// they blocked. An anonymous request costs nothing.
func (s *Shared) Viewer(ctx context.Context) (Viewer, error) {
	user, _ := identity.User(ctx)
	if user == "" {
		return Viewer{}, nil
	}
	ix, err := Load(ctx, s, api.Feed, blockIndexKey, []string{social.BlocksTag},
		func(ctx context.Context) (social.BlockIndex, error) {
			return social.LoadBlockIndex(ctx, s.DB.Primary())
		})
	if err != nil {
		return Viewer{}, err
	}
	return Viewer{User: user, Hidden: ix.Hidden(user), Shares: identity.Shares(ctx)}, nil
}

// Viewer is who asks for a list.
type Viewer struct {
	User   string          // "" when anonymous
	Hidden map[string]bool // the users whose items are hidden from User: those they blocked
	// Shares is what the edge said of User (identity.Shares): that they block nobody, so
	// that their answer is the one it keeps for anonymous readers.
	Shares bool
}

// Blocking reports whether the viewer hides anyone's items.
func (v Viewer) Blocking() bool { return len(v.Hidden) > 0 }

// Cache marks an answer computed for v: public under the policy of kind and tags (with Vary
// on the field in which the edge names whose blocks filter it: api.PublicPerViewer) for an
// anonymous viewer and for a signed-in one whom the edge and the app both know to block
// nobody; private for any other signed-in viewer, so the edge keeps no copy per viewer.
func (v Viewer) Cache(w http.ResponseWriter, kind api.Resource, tags ...string) {
	if v.User != "" && (!v.Shares || v.Blocking()) {
		api.Private(w)
		return
	}
	api.PublicPerViewer(w, kind, tags...)
}

// Load returns the shared answer of kind under key: from the cache, else from fn, which
// the cache then keeps under tags for s.TTL[kind].
func Load[T any](ctx context.Context, s *Shared, kind api.Resource, key string, tags []string, fn func(ctx context.Context) (T, error)) (T, error) {
	return load(ctx, s, s.TTL[kind], key, tags, func(ctx context.Context) (T, []string, error) {
		v, err := fn(ctx)
		return v, nil, err
	})
}

// LoadPage is Load for a Page, kept under tags and the tags of its items (its Tags).
func LoadPage[T any](ctx context.Context, s *Shared, kind api.Resource, key string, tags []string, fn func(ctx context.Context) (Page[T], error)) (Page[T], error) {
	return load(ctx, s, s.TTL[kind], key, tags, func(ctx context.Context) (Page[T], []string, error) {
		sp, err := fn(ctx)
		return sp, sp.Tags, err
	})
}

// load is Load for ttl, with fn naming tags of the value besides tags. A request that
// carries a read-your-writes token still in force skips what the cache holds (its client
// has just written, and must read it) and stores what it loaded for the others.
func load[T any](ctx context.Context, s *Shared, ttl time.Duration, key string, tags []string, fn func(ctx context.Context) (T, []string, error)) (T, error) {
	if !s.DB.Pins(ctx) {
		return cache.GetOrLoadTagged(ctx, s.Cache, key, ttl, tags, fn)
	}
	v, more, err := fn(ctx)
	if err == nil {
		cache.Set(ctx, s.Cache, key, v, ttl, append(slices.Clip(tags), more...)...)
	}
	return v, err
}

// Page is one page of a list as everyone sees it, as the cache manager keeps it: the
// items, the author (user id) and the cursor of each, the cursor of the next page, the
// encoded answer for a reader who hides none of the authors, and the cache tags its items
// add to the list's (a whisper's own tag, which a like of it purges).
type Page[T any] struct {
	Items   []T      `json:"items"`
	Authors []string `json:"authors"`
	Ends    []string `json:"ends"`
	Next    string   `json:"next"`
	Body    []byte   `json:"body"`
	Tags    []string `json:"tags,omitempty"`
}

// NewPage makes the Page of p from rows, fetched with one row more than the limit
// (api.Trim).
func NewPage[T any](p api.Page, rows []T, author func(T) string, position func(T) any) (Page[T], error) {
	items, next := api.Trim(p, rows, position)
	sp := Page[T]{Items: items, Next: next, Authors: make([]string, len(items)), Ends: make([]string, len(items))}
	for i, it := range items {
		sp.Authors[i] = author(it)
		sp.Ends[i] = api.Cursor(position(it))
	}
	var err error
	sp.Body, err = api.ListBody(items, next)
	return sp, err
}

// hidesAny reports whether v hides the author of any item of sp.
func (sp *Page[T]) hidesAny(v Viewer) bool {
	if len(v.Hidden) == 0 {
		return false
	}
	for _, a := range sp.Authors {
		if v.Hidden[a] {
			return true
		}
	}
	return false
}

// Serve answers a list request from shared pages: pageAt(page) returns the Page of a page.
// An anonymous reader, and a signed-in one the edge and the app know to block nobody, gets
// the shared answer, public under kind and tags (Viewer.Cache), so the edge keeps one copy
// for all of them; any other signed-in reader gets a private answer: the shared one when
// they hide none of its authors, else its items less those authors, made up to the limit
// from the shared pages after it (at most maxExtraPages of api.MaxLimit items, which
// viewers share as they share the first).
func Serve[T any](w http.ResponseWriter, r *http.Request, v Viewer, kind api.Resource, tags []string, page api.Page, pageAt func(api.Page) (Page[T], error)) error {
	sp, err := pageAt(page)
	if err != nil {
		return err
	}
	v.Cache(w, kind, append(slices.Clip(tags), sp.Tags...)...)
	if !sp.hidesAny(v) {
		api.WriteJSON(w, r, http.StatusOK, sp.Body)
		return nil
	}
	out := make([]T, 0, page.Limit)
	lastEnd := "" // the cursor of the last item in out
	for extra := 0; ; extra++ {
		for i, it := range sp.Items {
			if v.Hidden[sp.Authors[i]] {
				continue
			}
			if len(out) == page.Limit { // full, and more to come: resume after the last one
				api.WriteList(w, r, out, lastEnd)
				return nil
			}
			out = append(out, it)
			lastEnd = sp.Ends[i]
		}
		if len(out) == page.Limit || sp.Next == "" || extra == maxExtraPages {
			api.WriteList(w, r, out, sp.Next)
			return nil
		}
		if sp, err = pageAt(api.Page{Limit: api.MaxLimit}.WithCursor(sp.Next)); err != nil {
			return err
		}
	}
}
