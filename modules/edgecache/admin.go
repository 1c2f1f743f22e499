package edgecache

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"

	"github.com/muejam/edge/modules/edgeadmin"
)

func init() {
	edgeadmin.Register("/edge/cache/purge", caddy.AdminHandlerFunc(handlePurge))
}

// PurgeRequest is the body of POST /edge/cache/purge on Caddy's admin endpoint.
type PurgeRequest struct {
	// Cache names the cache; empty purges every cache of the running config.
	Cache string `json:"cache,omitempty"`
	// Tags are purge tags, as responses name them in Cache-Tags.
	Tags []string `json:"tags,omitempty"`
	// URLs are absolute URLs (http://host/path?query); the GET of each is purged, every
	// variant of it.
	URLs []string `json:"urls,omitempty"`
}

// PurgeResponse is the answer of POST /edge/cache/purge.
type PurgeResponse struct {
	// Caches are the names of the caches purged.
	Caches []string `json:"caches"`
	// Tags are the tags purged, the URLs' own tags included.
	Tags []string `json:"tags"`
	// Propagated is false when Valkey could not be told: other edge nodes keep the
	// entries until they expire.
	Propagated bool `json:"propagated"`
}

func handlePurge(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method not allowed")}
	}
	var req PurgeRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("decoding purge request: %v", err)}
	}
	if len(req.Tags) == 0 && len(req.URLs) == 0 {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("nothing to purge: give tags or urls")}
	}
	for _, t := range req.Tags {
		if t == "" || strings.ContainsAny(t, " \t\r\n") {
			return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("tag %q: tags are non-empty and have no white space", t)}
		}
	}
	resp := PurgeResponse{Caches: []string{}, Tags: []string{}, Propagated: true}
	var handlers []*Handler
	handlersMu.Lock()
	for h := range liveHandlers {
		if req.Cache == "" || h.Name == req.Cache {
			handlers = append(handlers, h)
		}
	}
	handlersMu.Unlock()
	if len(handlers) == 0 {
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("no cache named %q in the running config", req.Cache)}
	}
	done := map[*store]bool{}
	for _, h := range handlers {
		if done[h.store] {
			continue
		}
		done[h.store] = true
		tags := append([]string(nil), req.Tags...)
		for _, u := range req.URLs {
			k, err := h.keyer.keyOfURL(u, "")
			if err != nil || !strings.Contains(u, "://") {
				return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("url %q: want an absolute URL", u)}
			}
			tags = append(tags, keyTag(k))
		}
		if err := h.store.purge(r.Context(), tags, "admin"); err != nil {
			resp.Propagated = false
		}
		resp.Caches = append(resp.Caches, h.Name)
		resp.Tags = append(resp.Tags, tags...)
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(resp)
}
