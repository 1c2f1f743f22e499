// Package edge is the root of MueJam Edge: importing it registers every Caddy module of
// MueJam Edge. The custom Caddy build (xcaddy.json, `make caddy`) imports this package and each
// module package it lists; a test keeps this list, xcaddy.json and modules/ in step.
package edge

import (
	_ "github.com/muejam/edge/modules/circuitbreaker"
	_ "github.com/muejam/edge/modules/clientaddr"
	_ "github.com/muejam/edge/modules/edgeadmin"
	_ "github.com/muejam/edge/modules/edgecache"
	_ "github.com/muejam/edge/modules/jwtauth"
	_ "github.com/muejam/edge/modules/logbuffer"
	_ "github.com/muejam/edge/modules/piiscrub"
	_ "github.com/muejam/edge/modules/ratelimit"
	_ "github.com/muejam/edge/modules/readyourwrites"
	_ "github.com/muejam/edge/modules/viewerfilter"
)
