# syntax=docker/dockerfile:1
# The app server of MueJam Edge. The build context is the repository root:
#
#	docker build -f docker/appserver.Dockerfile .
#
# go.mod asks for Go 1.26.8; the golang:1.26 tag follows the newest 1.26 patch release, and the
# image sets GOTOOLCHAIN=local, so an older image fails the build instead of fetching a toolchain.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN --mount=type=cache,target=/root/.cache/go-build \
	CGO_ENABLED=0 go build -trimpath -o /out/appserver ./appserver
# The CA bundle of Amazon RDS (every region), fetched at build time: the app server verifies the
# database's certificate and name against it (DATABASE_URL ...?sslmode=verify-full&sslrootcert=
# /etc/ssl/certs/rds-global-bundle.pem, infra/terraform/root/main.tf). The build fails if the
# download does, or if what came is not PEM certificates.
RUN curl --fail --silent --show-error --location --proto '=https' --tlsv1.2 \
		--output /out/rds-global-bundle.pem https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem \
	&& grep -q -- '-----BEGIN CERTIFICATE-----' /out/rds-global-bundle.pem

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/appserver /appserver
COPY --from=build /out/rds-global-bundle.pem /etc/ssl/certs/rds-global-bundle.pem
# Listen on every interface of the container, on the ports of defaultConfig in
# appserver/config.go: 8081 the API, 9081 metrics and pprof.
ENV APP_ADDR=0.0.0.0:8081 APP_METRICS_ADDR=0.0.0.0:9081
EXPOSE 8081 9081
USER nonroot:nonroot
ENTRYPOINT ["/appserver"]
