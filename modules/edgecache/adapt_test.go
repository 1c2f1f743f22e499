package edgecache

import (
	"testing"

	"github.com/muejam/edge/internal/adapttest"
)

// TestCaddyfileAdapt compares the JSON of each testdata/adapt/*.caddyfiletest; the golden
// file also shows the directive's order: after request_header, before encode and
// reverse_proxy.
func TestCaddyfileAdapt(t *testing.T) { adapttest.Run(t) }
