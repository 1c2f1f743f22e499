package circuitbreaker

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"

	"github.com/muejam/edge/internal/breaker"
	"github.com/muejam/edge/modules/edgeadmin"
)

func init() {
	edgeadmin.Register("/edge/breakers", caddy.AdminHandlerFunc(handleList))
	edgeadmin.Register("/edge/breakers/", caddy.AdminHandlerFunc(handleAction))
}

// BreakerList is the body of GET /edge/breakers.
type BreakerList struct {
	// Breakers lists every breaker of the running config, sorted by name.
	Breakers []breaker.Snapshot `json:"breakers"`
}

// snapshots returns the snapshots of every pooled breaker, sorted by name.
func snapshots() []breaker.Snapshot {
	list := []breaker.Snapshot{}
	breakers.Range(func(_, value any) bool {
		if b := value.(*entry).b.Load(); b != nil {
			list = append(list, b.Snapshot())
		}
		return true
	})
	slices.SortFunc(list, func(a, b breaker.Snapshot) int { return strings.Compare(a.Name, b.Name) })
	return list
}

// find returns the pooled breaker of that name.
func find(name string) *breaker.Breaker {
	var found *breaker.Breaker
	breakers.Range(func(key, value any) bool {
		if key.(string) == name {
			found = value.(*entry).b.Load()
			return false
		}
		return true
	})
	return found
}

func handleList(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method not allowed")}
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(BreakerList{Breakers: snapshots()})
}

// handleAction serves POST /edge/breakers/{name}/open|close|reset; a name may hold slashes.
func handleAction(w http.ResponseWriter, r *http.Request) error {
	rest := strings.TrimPrefix(r.URL.Path, "/edge/breakers/")
	i := strings.LastIndexByte(rest, '/')
	if i <= 0 {
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("want /edge/breakers/{name}/open|close|reset")}
	}
	name, action := rest[:i], rest[i+1:]
	if r.Method != http.MethodPost {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method not allowed")}
	}
	b := find(name)
	if b == nil {
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("no circuit breaker named %q", name)}
	}
	switch action {
	case "open":
		b.ForceOpen()
	case "close":
		b.Close()
	case "reset":
		b.Reset()
	default:
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("unknown action %q: want open, close or reset", action)}
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(b.Snapshot())
}
