package ratelimit

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/muejam/edge/internal/valkeyconn"
	"github.com/muejam/edge/modules/edgeadmin"
)

func init() {
	edgeadmin.Register("/edge/limits", caddy.AdminHandlerFunc(handleLimits))
}

// zones holds the windows of every zone across config loads, keyed by zone name, window
// and max_keys, so that counters survive `caddy reload` (a changed events count keeps
// them; a changed window starts afresh). remotes holds the Valkey connections and their
// breakers by address.
var (
	zones   = caddy.NewUsagePool()
	remotes = caddy.NewUsagePool()
)

// zoneState is a zone's pooled state: its local windows and a sweeper dropping idle keys.
type zoneState struct {
	windows *Windows
	info    atomic.Pointer[ZoneInfo]
	remote  atomic.Pointer[remote]
	stop    chan struct{}
}

// takeZone takes a reference to the pooled state of a zone, making it on first use.
func takeZone(key string, window time.Duration, maxKeys int) (*zoneState, error) {
	val, _, err := zones.LoadOrNew(key, func() (caddy.Destructor, error) {
		st := &zoneState{windows: NewWindows(window, maxKeys), stop: make(chan struct{})}
		go st.sweep(min(max(window, time.Second), time.Minute))
		return st, nil
	})
	if err != nil {
		return nil, err
	}
	return val.(*zoneState), nil
}

// sweep drops idle keys every period until the state is destructed.
func (st *zoneState) sweep(period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-st.stop:
			return
		case now := <-t.C:
			st.windows.Sweep(now)
		}
	}
}

// Destruct stops the sweeper once no config uses the zone.
func (st *zoneState) Destruct() error {
	close(st.stop)
	return nil
}

// pooledRemote makes a remote a caddy.Destructor.
type pooledRemote struct{ *remote }

// Destruct closes the Valkey connection once no config uses it.
func (p pooledRemote) Destruct() error {
	p.Close()
	return nil
}

func remoteKey(cfg valkeyconn.Config, retry time.Duration) string {
	return fmt.Sprintf("%s|%s", cfg.Key(), retry)
}

// takeRemote takes a reference to the pooled Valkey connection of cfg.
func takeRemote(cfg valkeyconn.Config, retry time.Duration, logger *zap.Logger) (*remote, error) {
	val, _, err := remotes.LoadOrNew(remoteKey(cfg, retry), func() (caddy.Destructor, error) {
		r, err := newRemote(cfg, retry, logger)
		return pooledRemote{r}, err
	})
	if err != nil {
		return nil, err
	}
	return val.(pooledRemote).remote, nil
}

// ZoneInfo describes one zone of the running config in GET /edge/limits.
type ZoneInfo struct {
	// Name, Key, Events, Window and DryRun are the zone's configuration.
	Name   string `json:"name"`
	Key    string `json:"key"`
	Events int    `json:"events"`
	Window string `json:"window"`
	DryRun bool   `json:"dry_run,omitempty"`
	// Valkey is the shared server's address; empty in local mode.
	Valkey string `json:"valkey,omitempty"`
	// Mode is local, valkey, or fallback while Valkey's breaker is not closed or before
	// the first connection.
	Mode string `json:"mode"`
	// Keys is the number of keys in this node's windows.
	Keys int `json:"keys"`
}

// LimitList is the body of GET /edge/limits.
type LimitList struct {
	// Zones lists the zones of the running config, sorted by name.
	Zones []ZoneInfo `json:"zones"`
}

func handleLimits(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method not allowed")}
	}
	list := LimitList{Zones: []ZoneInfo{}}
	zones.Range(func(_, value any) bool {
		st := value.(*zoneState)
		info := *st.info.Load()
		info.Mode = "local"
		if rem := st.remote.Load(); rem != nil && info.Valkey != "" {
			info.Mode = "valkey"
			if !rem.Available() {
				info.Mode = "fallback"
			}
		}
		info.Keys = st.windows.Len()
		list.Zones = append(list.Zones, info)
		return true
	})
	slices.SortFunc(list.Zones, func(a, b ZoneInfo) int { return strings.Compare(a.Name, b.Name) })
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(list)
}

// Interface guards
var (
	_ caddy.Destructor = (*zoneState)(nil)
	_ caddy.Destructor = pooledRemote{}
)
