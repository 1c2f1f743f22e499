# syntax=docker/dockerfile:1
# The one-off database migration task of MueJam Edge (infra/terraform/modules/ecs-task, module
# "migrate" in infra/terraform/root/main.tf; docs/deployment.md says how the deploy runs it):
# the app server's `migrate` command applies the embedded SQL migrations as the migration role
# (the RDS master user, owner of the schema), then psql creates or updates the app server's
# login role, a member of muejam_app (DML only), with the password of its secret
# (docker/migrate-entrypoint.sh). The build context is the repository root:
#
#	docker build -f docker/migrate.Dockerfile .
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN --mount=type=cache,target=/root/.cache/go-build \
	CGO_ENABLED=0 go build -trimpath -o /out/appserver ./appserver
# The CA bundle of Amazon RDS, fetched at build time, as in docker/appserver.Dockerfile: both
# the app server and psql verify the database's certificate and name against it
# (sslmode=verify-full&sslrootcert=/etc/ssl/certs/rds-global-bundle.pem).
RUN curl --fail --silent --show-error --location --proto '=https' --tlsv1.2 \
		--output /out/rds-global-bundle.pem https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem \
	&& grep -q -- '-----BEGIN CERTIFICATE-----' /out/rds-global-bundle.pem

FROM debian:bookworm-slim
RUN apt-get update \
	&& apt-get install --yes --no-install-recommends postgresql-client ca-certificates \
	&& rm -rf /var/lib/apt/lists/* \
	&& useradd --system --uid 65532 --no-create-home migrate
COPY --from=build /out/appserver /usr/local/bin/appserver
COPY --from=build /out/rds-global-bundle.pem /etc/ssl/certs/rds-global-bundle.pem
COPY --chmod=0755 docker/migrate-entrypoint.sh /usr/local/bin/migrate-entrypoint.sh
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/migrate-entrypoint.sh"]
