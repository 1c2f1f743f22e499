package circuitbreaker

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/muejam/edge/internal/breaker"
)

// breakers holds every breaker by name across config loads, so that their state survives
// `caddy reload`: a module takes a reference in Provision (or on first use, for breakers
// keyed per request or per upstream) and releases it in Cleanup.
var breakers = caddy.NewUsagePool()

// entry is a pooled breaker. Its group says which kind of module, with which settings,
// made it; a module of the same group in the next config takes it over.
type entry struct {
	name   string
	group  atomic.Pointer[string]
	b      atomic.Pointer[breaker.Breaker]
	logger atomic.Pointer[zap.Logger]
	// dial is how a transport last dialed the breaker's upstream, for its probes.
	dial atomic.Pointer[reverseproxy.DialInfo]
	// shortCircuited counts the requests the breaker refused.
	shortCircuited prometheus.Counter
}

// allow asks the breaker for a request, counting a refusal.
func (e *entry) allow() (breaker.Done, error) {
	done, err := e.b.Load().Allow()
	if err != nil {
		e.shortCircuited.Inc()
	}
	return done, err
}

// Destruct drops the breaker's metric series once no config uses it.
func (e *entry) Destruct() error {
	forgetMetrics(e.name)
	return nil
}

// onChange logs and counts a state change of the breaker.
func (e *entry) onChange(from, to breaker.State) {
	observeChange(e.name, from, to)
	if log := e.logger.Load(); log != nil {
		log.Info("circuit breaker state changed",
			zap.String("breaker", e.name), zap.Stringer("from", from), zap.Stringer("to", to))
	}
}

// owner is the set of breakers one module instance holds references to.
type owner struct {
	group    string
	settings breaker.Settings
	logger   *zap.Logger
	limit    int         // most breakers this owner makes; 0 for no limit
	full     atomic.Bool // the limit was reached and logged

	mu   sync.RWMutex
	held map[string]*entry
}

func newOwner(group string, s breaker.Settings, logger *zap.Logger, limit int) *owner {
	return &owner{group: fmt.Sprintf("%s %+v", group, s), settings: s, logger: logger, limit: limit,
		held: map[string]*entry{}}
}

// adoptGroup takes a reference to every pooled breaker of o's group, so that the breakers a
// module of the previous config made on the fly survive the reload.
func (o *owner) adoptGroup() error {
	var names []string
	breakers.Range(func(key, value any) bool {
		if g := value.(*entry).group.Load(); g != nil && *g == o.group {
			names = append(names, key.(string))
		}
		return true
	})
	for _, name := range names {
		if _, err := o.get(name); err != nil {
			return err
		}
	}
	return nil
}

// get returns the named breaker, taking a reference to it (or making it) on first use. It
// returns nil when the owner holds its limit of breakers.
func (o *owner) get(name string) (*entry, error) {
	o.mu.RLock()
	e, ok := o.held[name]
	o.mu.RUnlock()
	if ok {
		return e, nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if e, ok := o.held[name]; ok {
		return e, nil
	}
	if o.limit > 0 && len(o.held) >= o.limit {
		if o.full.CompareAndSwap(false, true) {
			o.logger.Warn("circuit breaker limit reached; requests with new keys pass unguarded",
				zap.Int("max_breakers", o.limit))
		}
		return nil, nil
	}
	val, _, err := breakers.LoadOrNew(name, func() (caddy.Destructor, error) {
		return &entry{name: name, shortCircuited: shortCircuited.WithLabelValues(name)}, nil
	})
	if err != nil {
		return nil, err
	}
	e = val.(*entry)
	e.logger.Store(o.logger)
	if cur := e.b.Load(); cur == nil || cur.Settings() != o.settings {
		// New, or made by a config with other settings: the newest config wins.
		b, err := breaker.New(name, o.settings, e.onChange)
		if err != nil {
			_, _ = breakers.Delete(name)
			return nil, err
		}
		e.b.Store(b)
		e.group.Store(&o.group)
		observeState(name, breaker.Closed)
	}
	o.held[name] = e
	return e, nil
}

// transportOpen reports whether the breaker of a circuit_breaker transport for the upstream
// at addr is open (not half-open).
func transportOpen(addr string) bool {
	open := false
	breakers.Range(func(key, value any) bool {
		if key.(string) != addr {
			return true
		}
		e := value.(*entry)
		if g := e.group.Load(); g != nil && strings.HasPrefix(*g, transportGroup+" ") {
			b := e.b.Load()
			open = b != nil && b.State() == breaker.Open
		}
		return false
	})
	return open
}

// transportGroup starts the group of the transports' breakers.
const transportGroup = "transport"

// entries returns the breakers o holds.
func (o *owner) entries() []*entry {
	o.mu.RLock()
	defer o.mu.RUnlock()
	list := make([]*entry, 0, len(o.held))
	for _, e := range o.held {
		list = append(list, e)
	}
	return list
}

// lookup returns the named breaker if o holds it.
func (o *owner) lookup(name string) *entry {
	o.mu.RLock()
	defer o.mu.RUnlock()
	return o.held[name]
}

// release gives back every reference o holds.
func (o *owner) release() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for name := range o.held {
		_, _ = breakers.Delete(name)
	}
	clear(o.held)
}
