#!/usr/bin/env bash
# Smoke tests of a running MueJam Edge: after every deployment (deploy.sh, rollback.sh) and
# against the local stack (make run).
#
#	scripts/deployment/smoke-tests.sh BASE_URL
#
# BASE_URL is the edge, e.g. http://localhost:8080 or the environment's https:// URL. Checks:
#   health            GET /v1/health answers 200 with "status": "healthy"
#   metrics           EDGE_METRICS_URL (default http://localhost:9180/metrics, the edge's
#                     metrics listener) and APP_METRICS_URL (default http://localhost:9081/metrics,
#                     the app server's internal listener) serve Prometheus text; set one to
#                     the empty string where it is unreachable (deployed environments keep
#                     both inside the VPC)
#   metrics private   GET BASE_URL/metrics does not serve Prometheus text through the edge
#   cached read       a second GET CACHED_PATH (default /v1/discover?tab=new) is a cache hit
#                     (Cache-Status, RFC 9211)
#   rate limit        GET RATE_LIMITED_PATH (default /v1/discover?tab=new) carries rate limit
#                     headers (RateLimit, or RateLimit-Limit and RateLimit-Remaining)
# The cached read and rate limit checks are skipped, with a "not yet available" line, when
# the edge sends no Cache-Status / no rate limit header at all (an edge whose Caddyfile does
# not enable edge_cache / edge_rate_limit). Once it sends them, they must be right.
# ORIGIN_SECRET, when set, is sent as X-Origin-Verify on every request to BASE_URL, as
# CloudFront does: for an environment whose load balancer is reached without the CDN (dev).
# Prints one line per check and a summary; exits 1 when a check failed.
set -euo pipefail

if (($# != 1)); then
	echo "usage: smoke-tests.sh BASE_URL" >&2
	exit 2
fi
BASE_URL=${1%/}
EDGE_METRICS_URL=${EDGE_METRICS_URL-http://localhost:9180/metrics}
APP_METRICS_URL=${APP_METRICS_URL-http://localhost:9081/metrics}
CACHED_PATH=${CACHED_PATH:-/v1/discover?tab=new}
RATE_LIMITED_PATH=${RATE_LIMITED_PATH:-/v1/discover?tab=new}
TIMEOUT=${SMOKE_TIMEOUT:-10}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
BODY=$work/body
HEADERS=$work/headers
STATUS=000

passed=0 failed=0 skipped=0
pass() { printf 'ok    %s\n' "$*"; passed=$((passed + 1)); }
fail() { printf 'FAIL  %s\n' "$*"; failed=$((failed + 1)); }
skip() { printf 'skip  %s\n' "$*"; skipped=$((skipped + 1)); }

# fetch GETs a URL into BODY and HEADERS and sets STATUS (000 when there is no answer).
fetch() {
	: >"$BODY"
	: >"$HEADERS"
	local origin=()
	if [ -n "${ORIGIN_SECRET:-}" ] && [[ $1 == "$BASE_URL"* ]]; then
		origin=(--header "X-Origin-Verify: $ORIGIN_SECRET")
	fi
	STATUS=$(curl --silent --max-time "$TIMEOUT" --output "$BODY" --dump-header "$HEADERS" \
		"${origin[@]}" --write-out '%{http_code}' "$1") || STATUS=000
}

# header prints the value of the last response header named $1 (any case), or nothing.
header() {
	awk -v name="$1" 'BEGIN { name = tolower(name) }
		{ sub(/\r$/, "") }
		index($0, ":") && tolower(substr($0, 1, index($0, ":") - 1)) == name {
			v = substr($0, index($0, ":") + 1); sub(/^[ \t]+/, "", v); value = v
		}
		END { printf "%s", value }' "$HEADERS"
}

# snippet prints the start of the last body, for a failure message.
snippet() { head -c 200 "$BODY" | tr '\n' ' '; }

check_health() {
	fetch "$BASE_URL/v1/health"
	if [[ $STATUS == 200 ]] && grep -Eq '"status"[[:space:]]*:[[:space:]]*"healthy"' "$BODY"; then
		pass "health: GET /v1/health 200 healthy"
	else
		fail "health: GET $BASE_URL/v1/health answered $STATUS: $(snippet)"
	fi
}

# check_metrics NAME URL
check_metrics() {
	if [[ -z $2 ]]; then
		skip "metrics of the $1: ${1^^}_METRICS_URL is empty (endpoint not reachable from here)"
		return
	fi
	fetch "$2"
	if [[ $STATUS == 200 ]] && grep -q '^# TYPE ' "$BODY"; then
		pass "metrics of the $1: $2 serves Prometheus text"
	else
		fail "metrics of the $1: GET $2 answered $STATUS without Prometheus text: $(snippet)"
	fi
}

check_metrics_private() {
	fetch "$BASE_URL/metrics"
	if [[ $STATUS == 000 ]]; then
		fail "metrics private: GET $BASE_URL/metrics got no answer"
	elif grep -q '^# TYPE ' "$BODY"; then
		fail "metrics private: GET $BASE_URL/metrics serves Prometheus text through the edge"
	else
		pass "metrics private: GET /metrics through the edge answered $STATUS, no metrics"
	fi
}

check_cached_read() {
	fetch "$BASE_URL$CACHED_PATH"
	local first
	first=$(header Cache-Status)
	fetch "$BASE_URL$CACHED_PATH"
	local second
	second=$(header Cache-Status)
	if [[ $STATUS == 000 ]]; then
		fail "cached read: GET $BASE_URL$CACHED_PATH got no answer"
	elif [[ -z $first && -z $second ]]; then
		skip "cached read: not yet available (no Cache-Status header on GET $CACHED_PATH)"
	elif [[ $STATUS == 200 && ${second,,} =~ (^|[;[:space:]])hit($|[;[:space:]]) ]]; then
		pass "cached read: second GET $CACHED_PATH was a hit (Cache-Status: $second)"
	else
		fail "cached read: second GET $CACHED_PATH answered $STATUS, Cache-Status: ${second:-none} (first: ${first:-none})"
	fi
}

check_rate_limit() {
	fetch "$BASE_URL$RATE_LIMITED_PATH"
	local combined limit remaining
	combined=$(header RateLimit)
	limit=$(header RateLimit-Limit)
	remaining=$(header RateLimit-Remaining)
	if [[ $STATUS == 000 ]]; then
		fail "rate limit: GET $BASE_URL$RATE_LIMITED_PATH got no answer"
	elif [[ -z $combined && -z $limit && -z $remaining ]]; then
		skip "rate limit: not yet available (no RateLimit header on GET $RATE_LIMITED_PATH)"
	elif [[ $STATUS == 429 && -n $(header Retry-After) ]]; then
		pass "rate limit: GET $RATE_LIMITED_PATH is limited (429 with Retry-After)"
	elif [[ -n $combined && $combined =~ (^|[;,[:space:]])r=([0-9]+) ]]; then
		pass "rate limit: RateLimit: $combined"
	elif [[ ${limit%%[^0-9]*} =~ ^[0-9]+$ && $remaining =~ ^[0-9]+$ ]] && ((10#$remaining <= 10#${limit%%[^0-9]*})); then
		pass "rate limit: RateLimit-Limit $limit, RateLimit-Remaining $remaining"
	else
		fail "rate limit: GET $RATE_LIMITED_PATH answered $STATUS with malformed headers (RateLimit: ${combined:-none}, RateLimit-Limit: ${limit:-none}, RateLimit-Remaining: ${remaining:-none})"
	fi
}

echo "smoke tests of $BASE_URL"
check_health
check_metrics edge "$EDGE_METRICS_URL"
check_metrics app "$APP_METRICS_URL"
check_metrics_private
check_cached_read
check_rate_limit
echo "smoke tests: $passed passed, $failed failed, $skipped skipped"
((failed == 0))
