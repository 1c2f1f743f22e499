package promreg

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestRegisterToleratesRepeats(t *testing.T) {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "promreg_test_total", Help: "test"})
	reg := prometheus.NewRegistry()
	for range 2 {
		if err := Register(reg, c); err != nil {
			t.Fatalf("Register: %v", err)
		}
	}
	if err := Register(nil, c); err != nil {
		t.Fatalf("Register(nil): %v", err)
	}
	// The same name with other labels is a real conflict.
	other := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "promreg_test_total", Help: "test"}, []string{"zone"})
	if err := Register(reg, other); err == nil {
		t.Fatal("Register accepted a conflicting collector")
	}
}
