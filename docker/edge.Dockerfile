# syntax=docker/dockerfile:1
# The edge of MueJam Edge: the custom Caddy built from xcaddy.json by scripts/caddybuild, run
# with caddyfiles/production.Caddyfile, configured by the environment its header lists (ECS
# sets it: infra/terraform/root/main.tf). docker-compose.yml mounts docker/compose.Caddyfile,
# the laptop configuration, over /etc/caddy/Caddyfile. The build context is the repository root:
#
#	docker build -f docker/edge.Dockerfile .
#
# go.mod asks for Go 1.26.8; the golang:1.26 tag follows the newest 1.26 patch release, and the
# image sets GOTOOLCHAIN=local, so an older image fails the build instead of fetching a toolchain.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# xcaddy's builder compiles with CGO_ENABLED=0: the binary is static.
RUN --mount=type=cache,target=/root/.cache/go-build \
	go run ./scripts/caddybuild -config xcaddy.json -o /out/caddy

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/caddy /usr/bin/caddy
COPY caddyfiles/production.Caddyfile /etc/caddy/Caddyfile
# 8080: the site; 9180: the metrics listener (EDGE_METRICS_BIND; ECS maps it as metrics). The
# admin API (localhost:2019) listens on the container's loopback and is not exposed.
EXPOSE 8080 9180
USER nonroot:nonroot
CMD ["/usr/bin/caddy", "run", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"]
