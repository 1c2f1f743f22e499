// Package breaker is the circuit breaker of MueJam Edge: the one implementation that the
// Caddy modules (per upstream, per route) and the guards around Valkey (rate limiter, cache)
// share. It is built on github.com/sony/gobreaker/v2, which provides the state machine
// (closed, open, half-open with a bounded number of probes); this package adds the trip
// conditions gobreaker does not have (failure ratio and slow-call ratio over a rolling window,
// combinable with consecutive failures), an open duration that grows on repeated trips, and
// operator overrides (force open, close, reset). It imports nothing from Caddy.
//
// Use it in two steps around any call:
//
//	done, err := b.Allow()
//	if err != nil { // short-circuited: b.RetryAfter() says for how long
//		return err
//	}
//	start := time.Now()
//	err = call()
//	done(breaker.ResultOf(err), time.Since(start))
//
// or in one, with Execute.
package breaker

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
)

// ErrOpen is returned by Allow and Execute when the breaker short-circuits a call: it is
// open, forced open, or half-open with all its probes in flight.
var ErrOpen = errors.New("circuit breaker is open")

// State is the state of a breaker.
type State int

// The states of a breaker. The values are those of the state gauge.
const (
	Closed State = iota
	HalfOpen
	Open
)

// String returns closed, half_open or open.
func (s State) String() string {
	switch s {
	case Closed:
		return "closed"
	case HalfOpen:
		return "half_open"
	case Open:
		return "open"
	}
	return fmt.Sprintf("state(%d)", int(s))
}

// Settings configure a breaker. Trip conditions combine: the breaker opens as soon as any
// enabled condition holds. Settings is comparable, so that callers can tell whether a breaker
// they find already exists was made with the same settings.
type Settings struct {
	// ConsecutiveFailures opens the breaker after this many failures in a row. 0 disables.
	ConsecutiveFailures int
	// FailureRatio opens the breaker when failures/calls over Window reach it (0 < r <= 1),
	// once at least MinRequests calls completed in the window. 0 disables.
	FailureRatio float64
	// SlowCallRatio opens the breaker when slow calls/calls over Window reach it, once at
	// least MinRequests calls completed in the window. 0 disables.
	SlowCallRatio float64
	// SlowCallThreshold is the latency from which a call counts as slow. Required with
	// SlowCallRatio.
	SlowCallThreshold time.Duration
	// MinRequests is the number of calls a window needs before a ratio can trip. Default 10.
	MinRequests int
	// Window is the span of the rolling window of the ratio conditions. Default 10s.
	Window time.Duration
	// OpenDuration is how long the breaker stays open after a trip. Default 10s.
	OpenDuration time.Duration
	// MaxOpenDuration caps the open duration, which doubles on every trip that follows a
	// failed probe (without the breaker closing in between). Zero or equal to OpenDuration
	// keeps the open duration fixed.
	MaxOpenDuration time.Duration
	// HalfOpenProbes is how many calls the half-open breaker lets through; it closes when
	// they all succeed, and opens again at the first failure. Default 1.
	HalfOpenProbes int
}

// windowBuckets is the number of buckets of the rolling window.
const windowBuckets = 10

func (s Settings) withDefaults() Settings {
	if s.MinRequests == 0 {
		s.MinRequests = 10
	}
	if s.Window == 0 {
		s.Window = 10 * time.Second
	}
	if s.OpenDuration == 0 {
		s.OpenDuration = 10 * time.Second
	}
	if s.MaxOpenDuration < s.OpenDuration {
		s.MaxOpenDuration = s.OpenDuration
	}
	if s.HalfOpenProbes == 0 {
		s.HalfOpenProbes = 1
	}
	return s
}

// Validate reports settings that cannot make a working breaker.
func (s Settings) Validate() error {
	switch {
	case s.ConsecutiveFailures < 0:
		return errors.New("consecutive failures must not be negative")
	case s.FailureRatio < 0 || s.FailureRatio > 1:
		return errors.New("failure ratio must be between 0 and 1")
	case s.SlowCallRatio < 0 || s.SlowCallRatio > 1:
		return errors.New("slow call ratio must be between 0 and 1")
	case s.SlowCallRatio > 0 && s.SlowCallThreshold <= 0:
		return errors.New("slow call ratio needs a positive slow call threshold")
	case s.SlowCallThreshold < 0:
		return errors.New("slow call threshold must not be negative")
	case s.ConsecutiveFailures == 0 && s.FailureRatio == 0 && s.SlowCallRatio == 0:
		return errors.New("no trip condition: set consecutive failures, a failure ratio or a slow call ratio")
	case s.MinRequests < 0:
		return errors.New("min requests must not be negative")
	case s.Window < 0:
		return errors.New("window must not be negative")
	case s.Window > 0 && s.Window < windowBuckets*time.Millisecond:
		return fmt.Errorf("window must be at least %s", windowBuckets*time.Millisecond)
	case s.OpenDuration < 0:
		return errors.New("open duration must not be negative")
	case s.MaxOpenDuration < 0:
		return errors.New("max open duration must not be negative")
	case s.MaxOpenDuration > 0 && s.MaxOpenDuration < s.withDefaults().OpenDuration:
		return errors.New("max open duration must not be shorter than the open duration")
	case s.HalfOpenProbes < 0 || int64(s.HalfOpenProbes) > math.MaxUint32:
		return errors.New("half-open probes must be a positive number")
	}
	return nil
}

// Result is the outcome of a call.
type Result int

// The outcomes of a call. An ignored call (say, one the client gave up on) neither fails nor
// succeeds: it only frees its half-open probe slot.
const (
	Success Result = iota
	Failure
	Ignored
)

// ResultOf returns Failure for a non-nil error and Success for nil.
func ResultOf(err error) Result {
	if err != nil {
		return Failure
	}
	return Success
}

// Done reports the outcome of a call that Allow let through and how long it took (a
// successful or failed call of SlowCallThreshold or more also counts as slow).
type Done func(r Result, latency time.Duration)

// errIgnored tells gobreaker to exclude a call.
var errIgnored = errors.New("ignored")

// Breaker is a circuit breaker. Its methods are safe for concurrent use.
type Breaker struct {
	name     string
	raw      Settings // as given to New
	settings Settings // with defaults
	onChange func(from, to State)

	mu      sync.Mutex // guards window, the consecutive failures count and trips
	window  window
	consec  int
	trips   int       // trips since the breaker was last closed
	openEnd time.Time // when the current open period ends; zero when not open

	cb     atomic.Pointer[gobreaker.TwoStepCircuitBreaker[struct{}]]
	epoch  atomic.Uint64 // identifies the current gobreaker instance
	forced atomic.Bool   // forced open by an operator
	// openUntil mirrors openEnd in Unix nanoseconds for the lock-free short-circuit path.
	openUntil atomic.Int64
}

// New returns a closed breaker. onChange, if not nil, is called once for every state change,
// synchronously and with the breaker's internal lock held: it must be fast and must not call
// the breaker.
func New(name string, s Settings, onChange func(from, to State)) (*Breaker, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	b := &Breaker{name: name, raw: s, settings: s.withDefaults(), onChange: onChange}
	b.window.init(b.settings.Window)
	b.renew()
	return b, nil
}

// Name returns the breaker's name.
func (b *Breaker) Name() string { return b.name }

// Settings returns the settings the breaker was made with (before defaults).
func (b *Breaker) Settings() Settings { return b.raw }

// renew replaces the gobreaker state machine by a closed one.
func (b *Breaker) renew() {
	epoch := b.epoch.Add(1)
	b.cb.Store(gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        b.name,
		MaxRequests: uint32(b.settings.HalfOpenProbes),
		Timeout:     b.settings.OpenDuration,
		ReadyToTrip: func(gobreaker.Counts) bool { return b.readyToTrip() },
		IsExcluded:  func(err error) bool { return err == errIgnored },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			if b.epoch.Load() == epoch {
				b.changed(fromGobreaker(from), fromGobreaker(to))
			}
		},
	}))
}

func fromGobreaker(s gobreaker.State) State {
	switch s {
	case gobreaker.StateOpen:
		return Open
	case gobreaker.StateHalfOpen:
		return HalfOpen
	}
	return Closed
}

// readyToTrip is gobreaker's ReadyToTrip: it is called, with gobreaker's lock held, after
// every bad call (failed or slow) in the closed state.
func (b *Breaker) readyToTrip() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.settings
	if s.ConsecutiveFailures > 0 && b.consec >= s.ConsecutiveFailures {
		return true
	}
	calls, failures, slow := b.window.sum(time.Now())
	if calls < s.MinRequests || calls == 0 {
		return false
	}
	return s.FailureRatio > 0 && float64(failures) >= s.FailureRatio*float64(calls) ||
		s.SlowCallRatio > 0 && float64(slow) >= s.SlowCallRatio*float64(calls)
}

// changed records a state change: on open it sets the open period (doubling on repeated
// trips up to MaxOpenDuration), on close it forgets past trips; counts start afresh.
func (b *Breaker) changed(from, to State) {
	b.mu.Lock()
	b.window.reset()
	b.consec = 0
	switch to {
	case Open:
		b.trips++
		d := b.settings.OpenDuration
		for i := 1; i < b.trips && d < b.settings.MaxOpenDuration; i++ {
			d *= 2
		}
		d = min(d, b.settings.MaxOpenDuration)
		b.openEnd = time.Now().Add(d)
	case Closed:
		b.trips = 0
		b.openEnd = time.Time{}
	default:
		b.openEnd = time.Time{}
	}
	b.openUntil.Store(unixNano(b.openEnd))
	b.mu.Unlock()
	if b.onChange != nil {
		b.onChange(from, to)
	}
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// Allow asks to make a call. It returns ErrOpen when the breaker short-circuits it; otherwise
// the caller makes the call and reports its outcome with done, exactly once.
func (b *Breaker) Allow() (Done, error) {
	if b.forced.Load() {
		return nil, ErrOpen
	}
	if until := b.openUntil.Load(); until != 0 && time.Now().UnixNano() < until {
		return nil, ErrOpen
	}
	gdone, err := b.cb.Load().Allow()
	if err != nil {
		return nil, ErrOpen
	}
	return func(r Result, latency time.Duration) {
		if r == Ignored {
			gdone(errIgnored)
			return
		}
		b.record(r == Failure, latency)
		if r == Failure || b.slow(latency) {
			gdone(ErrOpen) // any other non-nil error is a failure to gobreaker
		} else {
			gdone(nil)
		}
	}, nil
}

func (b *Breaker) slow(latency time.Duration) bool {
	return b.settings.SlowCallThreshold > 0 && latency >= b.settings.SlowCallThreshold
}

// record counts a completed call in the window and the consecutive failures.
func (b *Breaker) record(failed bool, latency time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.window.add(time.Now(), failed, b.slow(latency))
	if failed {
		b.consec++
	} else {
		b.consec = 0
	}
}

// Record counts the outcome of a call made without asking Allow first, for callers that
// learn of calls only after the fact (Caddy's reverse_proxy circuit_breaker slot). It is
// dropped when the breaker would have short-circuited the call.
func (b *Breaker) Record(r Result, latency time.Duration) {
	if done, err := b.Allow(); err == nil {
		done(r, latency)
	}
}

// Execute runs fn if the breaker allows it, measures it, and counts a non-nil error as a
// failure. It returns ErrOpen without running fn when the breaker short-circuits.
func (b *Breaker) Execute(fn func() error) error {
	done, err := b.Allow()
	if err != nil {
		return err
	}
	start := time.Now()
	err = fn()
	done(ResultOf(err), time.Since(start))
	return err
}

// State returns the breaker's current state. A breaker whose open period has ended reports
// half-open.
func (b *Breaker) State() State {
	if b.forced.Load() {
		return Open
	}
	if until := b.openUntil.Load(); until != 0 && time.Now().UnixNano() < until {
		return Open
	}
	return fromGobreaker(b.cb.Load().State())
}

// RetryAfter returns how long the breaker stays open: the rest of the open period, the open
// duration when an operator forced it open, and zero when it is not open.
func (b *Breaker) RetryAfter() time.Duration {
	if b.forced.Load() {
		return b.settings.OpenDuration
	}
	if until := b.openUntil.Load(); until != 0 {
		if d := time.Duration(until - time.Now().UnixNano()); d > 0 {
			return d
		}
	}
	return 0
}

// Snapshot is what a breaker reports about itself.
type Snapshot struct {
	// Name is the breaker's name.
	Name string `json:"name"`
	// State is closed, half_open or open.
	State string `json:"state"`
	// Forced is true while an operator holds the breaker open.
	Forced bool `json:"forced,omitempty"`
	// RetryAfter is how long the breaker stays open, in nanoseconds in JSON.
	RetryAfter time.Duration `json:"retry_after_ns,omitempty"`
	// Trips counts the trips since the breaker was last closed.
	Trips int `json:"trips"`
	// Calls, Failures and Slow count the calls completed in the rolling window.
	Calls    int `json:"calls"`
	Failures int `json:"failures"`
	Slow     int `json:"slow"`
	// ConsecutiveFailures counts the failures since the last success.
	ConsecutiveFailures int `json:"consecutive_failures"`
}

// Snapshot returns the breaker's state and counts.
func (b *Breaker) Snapshot() Snapshot {
	st := b.State()
	b.mu.Lock()
	defer b.mu.Unlock()
	calls, failures, slow := b.window.sum(time.Now())
	return Snapshot{
		Name: b.name, State: st.String(), Forced: b.forced.Load(), RetryAfter: b.RetryAfter(),
		Trips: b.trips, Calls: calls, Failures: failures, Slow: slow, ConsecutiveFailures: b.consec,
	}
}

// ForceOpen opens the breaker until Close or Reset, whatever the calls do.
func (b *Breaker) ForceOpen() {
	from := b.State()
	b.forced.Store(true)
	if from != Open && b.onChange != nil {
		b.onChange(from, Open)
	}
}

// Close closes the breaker now and starts counting afresh; a forced open ends. The growth of
// the open duration remembers earlier trips until the breaker closes on its own.
func (b *Breaker) Close() {
	b.restart(false)
}

// Reset returns the breaker to its initial state: closed, no counts, no trip history.
func (b *Breaker) Reset() {
	b.restart(true)
}

func (b *Breaker) restart(forgetTrips bool) {
	from := b.State()
	b.forced.Store(false)
	b.renew()
	b.mu.Lock()
	b.window.reset()
	b.consec = 0
	if forgetTrips {
		b.trips = 0
	}
	b.openEnd = time.Time{}
	b.openUntil.Store(0)
	b.mu.Unlock()
	if from != Closed && b.onChange != nil {
		b.onChange(from, Closed)
	}
}

// window counts calls, failures and slow calls over a rolling window of windowBuckets
// buckets. Its owner serialises access.
type window struct {
	span    time.Duration
	buckets [windowBuckets]bucket
}

type bucket struct {
	slot                  int64 // the bucket's period number since the Unix epoch
	calls, failures, slow int
}

func (w *window) init(span time.Duration) { w.span = span }

func (w *window) period() int64 { return int64(w.span / windowBuckets) }

func (w *window) reset() { w.buckets = [windowBuckets]bucket{} }

func (w *window) add(now time.Time, failed, slow bool) {
	slot := now.UnixNano() / w.period()
	bk := &w.buckets[slot%windowBuckets]
	if bk.slot != slot {
		*bk = bucket{slot: slot}
	}
	bk.calls++
	if failed {
		bk.failures++
	}
	if slow {
		bk.slow++
	}
}

func (w *window) sum(now time.Time) (calls, failures, slow int) {
	slot := now.UnixNano() / w.period()
	for _, bk := range w.buckets {
		if bk.calls > 0 && slot-bk.slot < windowBuckets {
			calls += bk.calls
			failures += bk.failures
			slow += bk.slow
		}
	}
	return calls, failures, slow
}
