#!/usr/bin/env bash
# Health check of a running OneFlow AI gateway: liveness (/health), readiness (/ready: the
# database and Redis answer; a WARN line when it serves without one) and metrics (/metrics).
# Needs only curl.
#
#   scripts/health_check.sh                        # http://localhost:8000
#   ONEFLOW_URL=https://gw.example.com scripts/health_check.sh
#
# METRICS_TOKEN, when set, is sent as the bearer token /metrics wants. TIMEOUT (seconds, default
# 5) bounds each request. Exit status: 0 when every check passed, 1 when one failed, 2 when curl
# is missing.
set -eu

url="${ONEFLOW_URL:-http://localhost:8000}"
url="${url%/}"
timeout="${TIMEOUT:-5}"
failures=0
body_file="$(mktemp)"
trap 'rm -f "$body_file"' EXIT

if ! command -v curl >/dev/null 2>&1; then
  echo "FAIL curl is not installed" >&2
  exit 2
fi

ok() { echo "OK   $1"; }
warn() { echo "WARN $1"; }
fail() { echo "FAIL $1"; failures=$((failures + 1)); }

# GET a path; prints the HTTP status ("000" when nothing answered); the body goes to $body_file.
fetch() {
  local path="$1"
  shift
  curl --silent --show-error --max-time "$timeout" --output "$body_file" \
    --write-out '%{http_code}' "$@" "$url$path" 2>/dev/null || true
}

# The value of a "name":{"status":"failed","error":"..."} entry of the /ready body.
dependency_error() {
  sed -n "s/.*\"$1\":{\"status\":\"failed\",\"error\":\"\\([^\"]*\\)\".*/\\1/p" "$body_file"
}

echo "OneFlow AI at $url"

status="$(fetch /health)"
case "$status" in
  200) ok "/health: the process serves requests" ;;
  000)
    fail "/health: no answer from $url (nothing listening, or no answer within ${timeout} s)"
    echo "Health check failed: the gateway is unreachable"
    exit 1
    ;;
  *) fail "/health: HTTP $status" ;;
esac

status="$(fetch /ready)"
case "$status" in
  200)
    # Ready but degraded: a shared dependency is away and the gateway serves without it
    # (docs/reliability.md); reported, not a failure of this replica.
    degraded="$(sed -n 's/.*"degraded":\[\([^]]*\)\].*/\1/p' "$body_file" | tr -d '"' | tr ',' ' ')"
    if [ -z "$degraded" ]; then
      ok "/ready: every dependency answers"
    fi
    for dependency in $degraded; do
      warn "/ready: serving without $dependency: $(dependency_error "$dependency")"
    done
    ;;
  503)
    failed="$(sed -n 's/.*"failed":\[\([^]]*\)\].*/\1/p' "$body_file" | tr -d '"' | tr ',' ' ')"
    if [ -z "$failed" ]; then
      fail "/ready: HTTP 503: $(cat "$body_file")"
    fi
    for dependency in $failed; do
      fail "/ready: $dependency failed: $(dependency_error "$dependency")"
    done
    ;;
  000) fail "/ready: no answer within ${timeout} s" ;;
  *) fail "/ready: HTTP $status" ;;
esac

if [ -n "${METRICS_TOKEN:-}" ]; then
  status="$(fetch /metrics -H "Authorization: Bearer $METRICS_TOKEN")"
else
  status="$(fetch /metrics)"
fi
case "$status" in
  200)
    if grep -q 'http_requests_total' "$body_file"; then
      ok "/metrics: Prometheus metrics are served"
    else
      fail "/metrics: HTTP 200 but not OneFlow's metrics (no http_requests_total)"
    fi
    ;;
  401) fail "/metrics: HTTP 401: set METRICS_TOKEN to the gateway's token" ;;
  404) fail "/metrics: HTTP 404: metrics are off (ENABLE_METRICS=false)" ;;
  000) fail "/metrics: no answer within ${timeout} s" ;;
  *) fail "/metrics: HTTP $status" ;;
esac

if [ "$failures" -gt 0 ]; then
  echo "Health check failed: $failures problem(s)"
  exit 1
fi
echo "Healthy"
