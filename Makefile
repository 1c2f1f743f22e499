# MueJam Edge. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

GO        ?= go
BIN       := bin
CADDY     := $(BIN)/caddy
APPSERVER := $(BIN)/appserver
RUN_DIR   := .run
DEV_JWT   := $(RUN_DIR)/dev-jwt

GO_SOURCES := go.mod go.sum $(shell find . -name '*.go' -not -path './.run/*' -not -path './bin/*' -not -name '*_test.go') \
	$(shell find appserver/migrate/sql -name '*.sql')

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(CADDY): xcaddy.json $(GO_SOURCES)
	$(GO) run ./scripts/caddybuild -config xcaddy.json -o $@

$(APPSERVER): $(GO_SOURCES)
	CGO_ENABLED=0 $(GO) build -trimpath -o $@ ./appserver

.PHONY: caddy
caddy: $(CADDY) ## build the custom Caddy from xcaddy.json into bin/caddy
	@$(CADDY) list-modules --skip-standard --packages | grep -v '^$$'

.PHONY: appserver
appserver: $(APPSERVER) ## build the app server into bin/appserver

.PHONY: services-up
services-up: ## start Postgres primary + replica, Valkey and a Valkey Cluster (3+3) under .run/ (installs what is missing)
	@scripts/services.sh up

.PHONY: services-down
services-down: ## stop the services started by services-up
	@scripts/services.sh down

.PHONY: backup
backup: ## a full pgBackRest backup of the dev primary now (its WAL is archived continuously; repository .run/pg/backup)
	@scripts/services.sh backup

# The disaster-recovery drill on private clusters (never the dev services): the bench's data
# set (DRILL_SCALE, appserver seed -scale), 150 s of writes and the dev stack's archive_timeout
# (60 s); a smaller drill runs in make test. See docs/runbooks/disaster-recovery.md.
DRILL_SCALE ?= 0.1
.PHONY: dr-drill
dr-drill: $(APPSERVER) services-up ## restore drill: backup, writes, a bad DELETE, the primary lost, restores to the latest point and before the DELETE; prints RPO, RTO, MB/s
	$(GO) test -count=1 -v -timeout 90m -run '^TestDisasterRecoveryDrill$$' ./scripts/drdrill \
		-args -drill.scale=$(DRILL_SCALE) -drill.write=150s -drill.archive-timeout=60s

.PHONY: run
run: $(CADDY) $(APPSERVER) services-up ## run the whole stack: services, app server on :8081, edge on :8080 (VALKEY_CLUSTER=1: on the Valkey Cluster)
	@scripts/run.sh

.PHONY: token
token: ## print a dev JWT for USER (make token USER=alice), signed by the dev key in .run/dev-jwt/
	@$(GO) run ./scripts/devtoken -dir $(DEV_JWT) -user "$(USER)"

.PHONY: terraform-tools
terraform-tools: ## a Terraform-compatible CLI for the Terraform tests' fmt check (PATH, or OpenTofu built from its Go module under .run/tools/)
	@scripts/tofu.sh >/dev/null

.PHONY: monitoring-tools
monitoring-tools: ## promtool and amtool for the monitoring tests (Debian packages unpacked under .run/tools/, no service started)
	@scripts/promtool.sh promtool >/dev/null && scripts/promtool.sh amtool >/dev/null

.PHONY: prometheus
prometheus: ## run Prometheus on 127.0.0.1:9090 against the local stack (make run in another terminal)
	@$$(scripts/promtool.sh prometheus) --config.file=infra/monitoring/prometheus.yml \
		--web.listen-address=127.0.0.1:9090 --storage.tsdb.path=$(RUN_DIR)/prometheus

# The build tags xcaddy builds bin/caddy with (scripts/caddybuild): they leave out storage
# drivers of Caddy's PKI dependencies (badger, MySQL, pgx v4) that nothing here uses, so the
# tests compile what bin/caddy runs and no more.
GO_TAGS := nobadger,nomysql,nopgx

.PHONY: fmt-check
fmt-check: ## fail when a Go file is not gofmt-formatted
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi

# Modules of their own, below the root: tests whose dependencies the edge and the app server
# must not carry in their go.mod (the Terraform tests: HCL and go-cty; the app server's contract
# tests: libopenapi and its validator). Each requires the root module through a replace
# directive to ../..; make test and make lint cover them too.
TEST_MODULES := infra/terraform appserver/contract

.PHONY: lint
lint: fmt-check ## gofmt and go vet
	$(GO) vet -tags $(GO_TAGS) ./...
	@for m in $(TEST_MODULES); do echo "(cd $$m && $(GO) vet -tags $(GO_TAGS) ./...)"; (cd $$m && $(GO) vet -tags $(GO_TAGS) ./...) || exit 1; done

# The services, the binaries the tests need and the race build, made side by side: the
# services start (mostly waiting on initdb, pg_basebackup and the cluster's handshakes) while
# the binaries build. The tools come after: they and services.sh may both run apt-get, which
# takes a lock.
.PHONY: test-deps
test-deps:
	@$(MAKE) --no-print-directory -j 4 --output-sync=target services-up $(CADDY) $(APPSERVER) race-build

# The race build of every package, before any test runs: on an empty build cache it is most
# of make test's work (Caddy, pgx, the AWS SDK and the rest, with -race: ~5 minutes on 2
# cores), and the tests that measure time must not run beside it. With the cache warm it
# takes seconds; go test reuses what it built.
.PHONY: race-build
race-build:
	@mkdir -p $(RUN_DIR); start=$$(date +%s); $(GO) build -race -tags $(GO_TAGS) ./... && \
		echo $$(( $$(date +%s) - start )) >$(RUN_DIR)/race-build.seconds

# The packages whose tests take longest, named first: go test starts building and running
# packages in the order it is given them, so these run beside the many short ones instead of
# after them (CI on 2 cores: caddyfiles ~200 s, edgecache ~60 s, dbrouter ~40-60 s, ratelimit
# ~55 s, testenv ~30 s, drdrill ~30 s).
TEST_FIRST := ./caddyfiles/ ./modules/edgecache/ ./modules/ratelimit/ ./appserver/dbrouter/ ./internal/testenv/ ./scripts/drdrill/

# go test runs every go vet analyzer (-vet=all) on the packages it builds for the tests, so
# that the code is compiled once, with -race, instead of once for vet and once for the tests.
# The whole output is kept in .run/test.log; when a test fails, its failure lines are printed
# again at the end, where a CI log's tail shows them. The nested modules' tests run beside the
# root's (they are short; after it they added ~50 s), and their output follows it.
TEST_LOG := $(RUN_DIR)/test.log
# One package more than cores at a time (go test's default is one per core): most tests wait
# on services, windows and lifetimes rather than compute. On 2 cores, from a clean clone, three
# at a time took 306-309 s and one per core 375-415 s. But with a cold build cache go test
# also compiles every package's tests (race-build compiles only the packages), and three at a
# time then starved TestChaos (its harness's p50 1.4 s, Valkey's restart 4.7 s): when
# race-build took over a minute, one package per core. Four at a time (~250 s) once failed
# TestChaos's latency bounds when they were measured through its in-process front tier; they
# are now judged on the edge's access-log durations, but four is unmeasured since.
TEST_PACKAGES_AT_ONCE ?= $(shell n=$$(nproc); s=$$(cat $(RUN_DIR)/race-build.seconds 2>/dev/null || echo 0); \
	if [ "$$s" -gt 60 ]; then echo $$n; else echo $$((n + 1)); fi)
TEST_FLAGS = -race -vet=all -tags $(GO_TAGS) -count=1 -timeout 8m -p $(TEST_PACKAGES_AT_ONCE)
.PHONY: test
test: test-deps monitoring-tools terraform-tools fmt-check ## every test (and go vet), against real services and the built binaries
	@mkdir -p $(RUN_DIR)
	@echo "$(GO) test $(TEST_FLAGS) ./..., and beside it in $(TEST_MODULES); the output also in $(TEST_LOG)"
	@{ for m in $(TEST_MODULES); do n=$$(basename $$m); \
		(cd $$m && $(GO) test $(TEST_FLAGS) ./... >$(CURDIR)/$(RUN_DIR)/test-$$n.log 2>&1; echo $$? >$(CURDIR)/$(RUN_DIR)/test-$$n.rc) & \
	done; \
	$(GO) test $(TEST_FLAGS) $(TEST_FIRST) ./...; rc=$$?; wait; \
	for m in $(TEST_MODULES); do n=$$(basename $$m); cat $(RUN_DIR)/test-$$n.log; [ "$$(cat $(RUN_DIR)/test-$$n.rc)" = 0 ] || rc=1; done; \
	exit $$rc; } 2>&1 | tee $(TEST_LOG); \
	rc=$${PIPESTATUS[0]}; \
	if [ $$rc -ne 0 ]; then \
		echo "== what failed (the whole output: $(TEST_LOG))"; \
		grep -E '^\s*--- FAIL|^\s+[A-Za-z0-9_]+_test\.go:[0-9]+: |^panic:|^FAIL|^# |\.go:[0-9]+:[0-9]+: ' $(TEST_LOG) | cut -c1-400 | tail -60; \
	fi; \
	exit $$rc

# The hot paths' Go benchmarks (limiter decision, cache hit, scrubber, access-log encoder and logger, JWT
# verification with and without the verified-token cache, dbrouter's pick), 6 runs each, into
# .run/bench/micro-<commit>.txt; BASE=<commit> compares with that commit's file by benchstat.
MICRO_BENCH = BenchmarkWindowsAllow|BenchmarkServeHit|BenchmarkString|BenchmarkAccessLog(ger)?(Varied)?Ratio|BenchmarkVerify|BenchmarkPickReader
MICRO_PKGS = ./modules/ratelimit ./modules/edgecache ./internal/pii ./modules/piiscrub ./modules/jwtauth ./appserver/dbrouter
BENCHSTAT = golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da

.PHONY: microbench
microbench: ## Go benchmarks of the hot paths (BASE=<commit>: benchstat against an earlier run)
	@mkdir -p .run/bench
	@out=.run/bench/micro-$$(git rev-parse --short HEAD).txt; \
	$(GO) test -run '^$$' -bench '$(MICRO_BENCH)' -count 6 $(MICRO_PKGS) | tee $$out; \
	if [ -n "$(BASE)" ]; then $(GO) run $(BENCHSTAT) .run/bench/micro-$(BASE).txt $$out; fi

.PHONY: bench
bench: ## the edge against stock Caddy and peer plugins on loopback (QUICK=1: about 2.5 min, PIN=1: taskset); results in .run/bench/
	@$(GO) run ./scripts/bench $(if $(filter 1,$(QUICK)),-quick) $(if $(filter 1,$(PIN)),-pin)

.PHONY: clean
clean: ## remove build outputs (not .run/)
	rm -rf $(BIN)
