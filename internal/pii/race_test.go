//go:build race

package pii

// The race detector makes sync.Pool drop items, so encoding/json's scanner pool
// allocates now and then.
func init() { raceEnabled = true }
