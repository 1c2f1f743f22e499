package circuitbreaker

import (
	"testing"

	"github.com/muejam/edge/internal/adapttest"
)

// TestCaddyfileAdapt compares the JSON of each testdata/adapt/*.caddyfiletest.
func TestCaddyfileAdapt(t *testing.T) { adapttest.Run(t) }
