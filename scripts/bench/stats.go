package main

import (
	"encoding/json"
	"math"
	"slices"
)

// Summary is the median of a figure over rounds, with its smallest and largest value.
type Summary struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

// summarize returns the median, min and max of xs, skipping NaN (a round without the figure).
// The median of an even count is the mean of the two middle values. Every field is NaN when
// nothing is left.
func summarize(xs []float64) Summary {
	v := make([]float64, 0, len(xs))
	for _, x := range xs {
		if !math.IsNaN(x) {
			v = append(v, x)
		}
	}
	if len(v) == 0 {
		return Summary{math.NaN(), math.NaN(), math.NaN()}
	}
	slices.Sort(v)
	n := len(v)
	med := v[n/2]
	if n%2 == 0 {
		med = (v[n/2-1] + v[n/2]) / 2
	}
	return Summary{Median: med, Min: v[0], Max: v[n-1]}
}

// ratios divides a[i] by b[i], round by round; a round where either is missing or b is zero
// gives NaN.
func ratios(a, b []float64) []float64 {
	out := make([]float64, len(a))
	for i := range a {
		out[i] = math.NaN()
		if i < len(b) && b[i] != 0 && !math.IsNaN(a[i]) && !math.IsNaN(b[i]) {
			out[i] = a[i] / b[i]
		}
	}
	return out
}

// MarshalJSON writes a missing figure (NaN, every field at once) as null.
func (s Summary) MarshalJSON() ([]byte, error) {
	if math.IsNaN(s.Median) {
		return []byte("null"), nil
	}
	type plain Summary
	return json.Marshal(plain(s))
}
