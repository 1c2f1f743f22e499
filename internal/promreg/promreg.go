// Package promreg registers the edge modules' Prometheus collectors on the registry of each
// Caddy config: a reload brings a fresh registry, and several modules (or several instances of
// one) of the same config register the same package-level collectors.
package promreg

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers cs on reg, tolerating collectors already registered there. A nil reg
// (a config without metrics) registers nothing.
func Register(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	if reg == nil {
		return nil
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			if are := (prometheus.AlreadyRegisteredError{}); !errors.As(err, &are) {
				return err
			}
		}
	}
	return nil
}
