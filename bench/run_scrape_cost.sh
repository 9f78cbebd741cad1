#!/usr/bin/env bash
# Scrape cost (issue 12): the CPU an idle glm-proxy spends reading BACKENDS backends' /metrics
# every INTERVAL seconds, as a share of one core. Prints the figure and the command that
# reproduces it.
#
#   bash bench/run_scrape_cost.sh                 # about 2 x SECONDS s (plus the build)
#   bash bench/run_scrape_cost.sh --no-build --backends 16 --interval 0.1 --seconds 20
#
# BACKENDS mock-vllm processes on 127.0.0.1 (half prefillers, half decoders) serve vLLM's
# /metrics format with ENGINES engine label sets each. The mock's families are fewer than real
# vLLM's, so its body per engine is smaller: 26 engines make about 92 KB, the size of a real
# vLLM body with 2 DP ranks (94 KB, tests/unit/fixtures/vllm_metrics_dp2.txt). glm-proxy runs twice
# with no client traffic: with --scrape-interval 0 (baseline) and with --scrape-interval
# INTERVAL; the CPU time (user + system, /proc/PID/stat) it uses over SECONDS is measured after a
# 2 s warm-up. The difference is the cost of scraping. The mocks' own CPU is not counted.
#
# Everything started here is stopped on exit; only 127.0.0.1 is used.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

BUILD=1
BUILD_DIR=$ROOT/build
BACKENDS=16
INTERVAL=0.1
SECONDS_RUN=20
ENGINES=26
while [ $# -gt 0 ]; do
  case "$1" in
    --build-dir) BUILD_DIR=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --backends) BACKENDS=$2; shift 2 ;;
    --interval) INTERVAL=$2; shift 2 ;;
    --seconds) SECONDS_RUN=$2; shift 2 ;;
    --engines) ENGINES=$2; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

if [ "$BUILD" = 1 ]; then
  cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$BUILD_DIR" -j2 --target glm-proxy mock-vllm >/dev/null
fi
PROXY=$BUILD_DIR/glm-proxy
MOCK=$BUILD_DIR/mock-vllm
TMP=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

listening_port() {  # $1: log file; waits for "listening on ...:PORT"
  for _ in $(seq 1 200); do
    local port
    port=$(grep -o 'listening on [^ ]*' "$1" 2>/dev/null | head -1 | sed 's/.*://') || true
    if [ -n "$port" ]; then echo "$port"; return 0; fi
    sleep 0.05
  done
  echo "no listening line in $1" >&2; cat "$1" >&2; return 1
}

PREFILL=()
DECODE=()
for i in $(seq 1 "$BACKENDS"); do
  "$MOCK" --host 127.0.0.1 --port 0 --metrics-engines "$ENGINES" >"$TMP/mock$i.log" 2>&1 &
  PIDS+=($!)
  port=$(listening_port "$TMP/mock$i.log")
  if [ $((i % 2)) = 1 ]; then PREFILL+=("127.0.0.1:$port"); else DECODE+=("127.0.0.1:$port"); fi
done
BODY_BYTES=$(curl -s "http://${PREFILL[0]}/metrics" | wc -c)

ticks() {  # user + system clock ticks of pid $1
  awk '{print $14 + $15}' "/proc/$1/stat"
}

measure() {  # $1: scrape interval -> prints the share of one core, in percent
  local log=$TMP/proxy-$1.log
  local prefill decode
  prefill=$(IFS=,; echo "${PREFILL[*]}")
  decode=$(IFS=,; echo "${DECODE[*]}")
  "$PROXY" --host 127.0.0.1 --port 0 --prefill "$prefill" --decode "$decode" \
    --scrape-interval "$1" --log-level WARNING >"$log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  sleep 2
  local hz start end
  hz=$(getconf CLK_TCK)
  start=$(ticks "$pid")
  sleep "$SECONDS_RUN"
  end=$(ticks "$pid")
  # Failed scrapes (a loaded machine can miss the 0.8 x interval deadline) are reported, not
  # hidden: a failed scrape costs less than a good one.
  local port
  port=$(listening_port "$log")
  curl -s "http://127.0.0.1:$port/metrics" |
    awk '/^glm_proxy_backend_scrape_errors_total/ {n += $NF} END {print n + 0}' >"$TMP/errors-$1"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  awk -v t=$((end - start)) -v hz="$hz" -v s="$SECONDS_RUN" 'BEGIN {printf "%.2f", 100 * t / hz / s}'
}

BASE=$(measure 0)
SCRAPING=$(measure "$INTERVAL")
COST=$(awk -v a="$SCRAPING" -v b="$BASE" 'BEGIN {printf "%.2f", a - b}')
PER_SEC=$(awk -v n="$BACKENDS" -v i="$INTERVAL" 'BEGIN {printf "%.0f", n / i}')
echo "scrape cost: $BACKENDS backends every $INTERVAL s ($PER_SEC scrapes/s, $BODY_BYTES-byte bodies," \
  "$ENGINES engines each), idle glm-proxy"
echo "  CPU, share of one core over $SECONDS_RUN s: scraping off $BASE %, scraping on $SCRAPING %," \
  "cost $COST % (CLK_TCK $(getconf CLK_TCK): +-$(awk -v s="$SECONDS_RUN" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", 100 / hz / s}') %)"
echo "  failed scrapes (whole run, scraping on): $(cat "$TMP/errors-$INTERVAL")" \
  "of about $(awk -v p="$PER_SEC" -v s="$SECONDS_RUN" 'BEGIN {print p * (s + 2)}')"
echo "  reproduce: bash bench/run_scrape_cost.sh --backends $BACKENDS --interval $INTERVAL" \
  "--seconds $SECONDS_RUN --engines $ENGINES"
