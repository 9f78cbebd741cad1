#!/usr/bin/env bash
# Routing benchmark (issue 11): glm-proxy's prefill policies side by side on a multi-turn chat
# workload, scored by the prefillers' own simulated prefix caches. Prints one table and the
# command that reproduces it.
#
#   bash bench/run_routing.sh              # 30-60 s on 2 cores (plus the build)
#   bash bench/run_routing.sh --help
#
# Cluster, all mock-vllm on 127.0.0.1: 4 prefillers, each with a prefix cache of CACHE_BLOCKS
# blocks (LRU; 16 tokens of 4 bytes a block), --prefill-us-per-token per uncached token and at most
# MAX_PREFILLS prefills at once (the others wait, FIFO), so misses cost time and overload shows in
# TTFT; 2 decoders (16 tokens, 5 ms apart). The caches hold the workload's working set together
# but not one alone: the oracle run measures that working set (its distinct blocks) and the
# script checks it.
#
# Workload (glm-loadgen --conversations): 64 conversations x 8 turns, all 64 at once, turns of a
# conversation in order; each turn resends the conversation so far plus the streamed answer and
# ~1 KiB of new user text; 8 groups of conversations each share a 256-byte system prompt.
#
# Rows: each policy glm-proxy knows (--prefill-policy NAME; the decoders use least_loaded so
# that only the prefill choice differs), plus the oracle: one prefiller with an unbounded cache
# and 4x the prefill slots (the same compute). glm-proxy without --prefill-policy runs its
# default only. Columns: hit ratio (sum cached_tokens / sum prompt_tokens from the stream's usage
# chunk, cross-checked with the prefillers' /mock/stats), TTFT p50/p99, request share per
# prefiller (max/min).
#
# Scenarios: one 8 KiB prefix shared by every request, 32 at once (share max/min); two glm-proxy
# replicas with a conversation's turns alternating between them (hit ratio vs one replica);
# 200 sequential requests over 4 prefillers + 4 decoders (share per instance in both roles).
#
# Everything started here is stopped on exit; every run is bounded (requests x timeout); only
# 127.0.0.1 is used.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

BUILD=1
BUILD_DIR=$ROOT/build-bench
POLICIES="least_loaded round_robin consistent_hash cache_aware"
SCENARIO_POLICY=""
CONVERSATIONS=64
TURNS=8
CONCURRENCY=64
TURN_BYTES=1024
SYSTEM_BYTES=256
CONV_GROUPS=8
SESSION_HEADER=0
usage() {
  sed -n '2,34p' "$0" | sed 's/^# \{0,1\}//'
  cat <<'EOF'
Options:
  --build-dir DIR        CMake build directory (default build-bench)
  --no-build             use the binaries already in the build directory
  --policies "A B"       prefill policies to compare (default: least_loaded round_robin
                         consistent_hash cache_aware)
  --scenario-policy P    policy of the scenarios (default cache_aware, or glm-proxy's default
                         when it has no --prefill-policy)
  --conversations K      (64)   --turns T (8)   --concurrency C (64)
  --turn-bytes N (1024)  --system-bytes S (256)  --groups G (8)
  --session-header       send X-Session-Id with every turn
EOF
}
while [ $# -gt 0 ]; do
  case $1 in
    --build-dir) BUILD_DIR=$(realpath -m "$2"); shift ;;
    --no-build) BUILD=0 ;;
    --policies) POLICIES=$2; shift ;;
    --scenario-policy) SCENARIO_POLICY=$2; shift ;;
    --conversations) CONVERSATIONS=$2; shift ;;
    --turns) TURNS=$2; shift ;;
    --concurrency) CONCURRENCY=$2; shift ;;
    --turn-bytes) TURN_BYTES=$2; shift ;;
    --system-bytes) SYSTEM_BYTES=$2; shift ;;
    --groups) CONV_GROUPS=$2; shift ;;
    --session-header) SESSION_HEADER=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
REPRO="bash bench/run_routing.sh"
[ "$POLICIES" = "least_loaded round_robin consistent_hash cache_aware" ] ||
  REPRO+=" --policies \"$POLICIES\""
[ -z "$SCENARIO_POLICY" ] || REPRO+=" --scenario-policy $SCENARIO_POLICY"
[ "$CONVERSATIONS" = 64 ] || REPRO+=" --conversations $CONVERSATIONS"
[ "$TURNS" = 8 ] || REPRO+=" --turns $TURNS"
[ "$CONCURRENCY" = 64 ] || REPRO+=" --concurrency $CONCURRENCY"
[ "$TURN_BYTES" = 1024 ] || REPRO+=" --turn-bytes $TURN_BYTES"
[ "$SYSTEM_BYTES" = 256 ] || REPRO+=" --system-bytes $SYSTEM_BYTES"
[ "$CONV_GROUPS" = 8 ] || REPRO+=" --groups $CONV_GROUPS"
[ $SESSION_HEADER = 0 ] || REPRO+=" --session-header"

# Mock settings. A block is 16 tokens x 4 bytes. The working set of the default workload is about
# 9,100 blocks (the oracle prints the exact figure): 4 x 3,072 hold it with a third to spare
# for an uneven split, one alone holds a third of it.
CACHE_BLOCKS=3072
PREFILL_US_PER_TOKEN=50
MAX_PREFILLS=2
PREFILL_DELAY_MS=1
TOKEN_INTERVAL_MS=5
T=16

log() { echo "== $*" >&2; }

# --- build ---------------------------------------------------------------------------------------
if [ $BUILD = 1 ]; then
  bash .ci/install-deps.sh
  log "building in $BUILD_DIR"
  cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$BUILD_DIR" -j"$(nproc)" --target glm-proxy mock-vllm glm-loadgen >&2
fi
for b in glm-proxy mock-vllm glm-loadgen; do
  [ -x "$BUILD_DIR/$b" ] || { echo "missing $BUILD_DIR/$b (drop --no-build)" >&2; exit 1; }
done
# Conversations all at once: the load generator, the proxy and the mocks hold a few hundred
# connections.
[ "$(ulimit -n)" -ge 4096 ] || ulimit -n 4096 2>/dev/null || true

# Does this glm-proxy choose policies? (Issue 11 adds --prefill-policy and --decode-policy.)
# (The help is read whole first: grep -q leaving early could kill glm-proxy with SIGPIPE, which
# pipefail would report as a failure.)
HAS_POLICIES=0
PROXY_HELP=$("$BUILD_DIR/glm-proxy" --help 2>&1 || true)
if grep -q -- '--prefill-policy' <<<"$PROXY_HELP"; then HAS_POLICIES=1; fi
if [ -z "$SCENARIO_POLICY" ]; then
  if [ $HAS_POLICIES = 1 ]; then SCENARIO_POLICY=cache_aware; else SCENARIO_POLICY=default; fi
fi

# --- process bookkeeping: everything started here is stopped on exit -----------------------------
WORK=$(mktemp -d /tmp/glm-routing.XXXXXX)
RESULTS=$WORK/results.jsonl
: >"$RESULTS"
pids=()
cleanup() {
  local rc=$?
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ $rc -ne 0 ]; then echo "run_routing: failed (rc $rc); logs kept in $WORK" >&2; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
forget_pid() {
  local keep=() p
  for p in "${pids[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  pids=("${keep[@]}")
}
stop_pid() {
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  forget_pid "$1"
}
source bench/lib.sh  # wait_listening (the working directory is the repository)
# Sets MOCK_PORT.
start_mock() {
  local name=$1
  "$BUILD_DIR/mock-vllm" --host 127.0.0.1 --port 0 --engine-id "$name" "${@:2}" \
    >"$WORK/$name.log" 2>&1 &
  pids+=($!)
  MOCK_PORT=$(wait_listening "$WORK/$name.log" $!)
}
# Sets PROXY_PORT, PROXY_PID. Arguments: label, policy ("default": no policy flags), then
# --prefill/--decode HOST:PORT arguments.
start_proxy() {
  local label=$1 policy=$2 logf=$WORK/glm-proxy-$1.log
  shift 2
  local flags=()
  if [ "$policy" != default ]; then
    flags=(--prefill-policy "$policy" --decode-policy least_loaded)
  fi
  "$BUILD_DIR/glm-proxy" --host 127.0.0.1 --port 0 --workers 1 "${flags[@]}" "$@" >"$logf" 2>&1 &
  pids+=($!)
  PROXY_PID=$!
  PROXY_PORT=$(wait_listening "$logf" $!)
}
# Empties every mock's prefix cache and zeroes its counters.
reset_mocks() {
  local p
  for p in "$@"; do
    curl -sf -X POST "http://127.0.0.1:$p/reset_prefix_cache" >/dev/null
    curl -sf -X POST "http://127.0.0.1:$p/mock/reset" >/dev/null
  done
}
# Prints a JSON list of the mocks' /mock/stats.
stats_json() {
  local p first=1
  printf '['
  for p in "$@"; do
    [ $first = 1 ] || printf ','
    first=0
    curl -sf "http://127.0.0.1:$p/mock/stats"
  done
  printf ']'
}
# Runs glm-loadgen; prints its RESULT json.
loadgen() {
  local label=$1
  shift
  "$BUILD_DIR/glm-loadgen" --json-only --label "$label" --timeout 120 -t $T "$@" \
    2>>"$WORK/loadgen.err" | sed -n 's/^RESULT //p'
}
conversation_args() {
  local args=(--conversations "$CONVERSATIONS" --turns "$TURNS" -c "$CONCURRENCY"
    --turn-bytes "$TURN_BYTES" --system-bytes "$SYSTEM_BYTES" --groups "$CONV_GROUPS")
  [ $SESSION_HEADER = 0 ] || args+=(--session-header)
  echo "${args[@]}"
}
record() {  # kind label policy loadgen-json prefill-stats decode-stats
  printf '{"kind":"%s","label":"%s","policy":"%s","result":%s,"prefill":%s,"decode":%s}\n' \
    "$1" "$2" "$3" "${4:-null}" "$5" "$6" >>"$RESULTS"
}

# --- the cluster ---------------------------------------------------------------------------------
PREFILL_FLAGS=(--prefix-cache-blocks $CACHE_BLOCKS --prefill-us-per-token $PREFILL_US_PER_TOKEN
  --max-concurrent-prefills $MAX_PREFILLS --prefill-delay-ms $PREFILL_DELAY_MS)
DECODE_FLAGS=(--chars-per-token 4 --token-interval-ms $TOKEN_INTERVAL_MS)
PREFILL_PORTS=() DECODE_PORTS=()
for i in 0 1 2 3; do
  start_mock "prefill-$i" "${PREFILL_FLAGS[@]}"
  PREFILL_PORTS+=("$MOCK_PORT")
done
for i in 0 1; do
  start_mock "decode-$i" "${DECODE_FLAGS[@]}"
  DECODE_PORTS+=("$MOCK_PORT")
done
start_mock "oracle" --prefix-cache-blocks unbounded --prefill-us-per-token $PREFILL_US_PER_TOKEN \
  --max-concurrent-prefills $((MAX_PREFILLS * 4)) --prefill-delay-ms $PREFILL_DELAY_MS
ORACLE_PORT=$MOCK_PORT
PREFILL_ARGS=() DECODE_ARGS=()
for p in "${PREFILL_PORTS[@]}"; do PREFILL_ARGS+=(--prefill "127.0.0.1:$p"); done
for p in "${DECODE_PORTS[@]}"; do DECODE_ARGS+=(--decode "127.0.0.1:$p"); done
read -r -a CONV <<<"$(conversation_args)"
log "work dir $WORK; glm-proxy policies: $([ $HAS_POLICIES = 1 ] && echo yes || echo 'no --prefill-policy: default only')"

# --- the policies --------------------------------------------------------------------------------
log "oracle: one prefiller, unbounded cache"
reset_mocks "$ORACLE_PORT" "${DECODE_PORTS[@]}"
start_proxy oracle default --prefill "127.0.0.1:$ORACLE_PORT" "${DECODE_ARGS[@]}"
r=$(loadgen oracle --target "127.0.0.1:$PROXY_PORT" "${CONV[@]}")
record policy oracle oracle "$r" "$(stats_json "$ORACLE_PORT")" "$(stats_json "${DECODE_PORTS[@]}")"
stop_pid "$PROXY_PID"

run_policy() {  # label policy
  log "policy $1"
  reset_mocks "${PREFILL_PORTS[@]}" "${DECODE_PORTS[@]}"
  start_proxy "$1" "$2" "${PREFILL_ARGS[@]}" "${DECODE_ARGS[@]}"
  local r
  r=$(loadgen "$1" --target "127.0.0.1:$PROXY_PORT" "${CONV[@]}")
  record policy "$1" "$2" "$r" "$(stats_json "${PREFILL_PORTS[@]}")" \
    "$(stats_json "${DECODE_PORTS[@]}")"
  stop_pid "$PROXY_PID"
}
if [ $HAS_POLICIES = 1 ]; then
  for policy in $POLICIES; do run_policy "$policy" "$policy"; done
else
  run_policy "default" default
  for policy in $POLICIES; do record skipped "$policy" "$policy" null '[]' '[]'; done
fi

# --- scenarios -----------------------------------------------------------------------------------
log "scenario: one 8 KiB prefix shared by every request, 32 at once ($SCENARIO_POLICY)"
reset_mocks "${PREFILL_PORTS[@]}" "${DECODE_PORTS[@]}"
start_proxy shared "$SCENARIO_POLICY" "${PREFILL_ARGS[@]}" "${DECODE_ARGS[@]}"
r=$(loadgen shared --target "127.0.0.1:$PROXY_PORT" --conversations 256 --turns 1 -c 32 \
  --groups 1 --system-bytes 8192 --turn-bytes 256)
record shared_prefix shared "$SCENARIO_POLICY" "$r" "$(stats_json "${PREFILL_PORTS[@]}")" \
  "$(stats_json "${DECODE_PORTS[@]}")"
stop_pid "$PROXY_PID"

log "scenario: two replicas, turns alternating ($SCENARIO_POLICY)"
reset_mocks "${PREFILL_PORTS[@]}" "${DECODE_PORTS[@]}"
start_proxy replica-a "$SCENARIO_POLICY" "${PREFILL_ARGS[@]}" "${DECODE_ARGS[@]}"
A_PID=$PROXY_PID A_PORT=$PROXY_PORT
start_proxy replica-b "$SCENARIO_POLICY" "${PREFILL_ARGS[@]}" "${DECODE_ARGS[@]}"
B_PID=$PROXY_PID B_PORT=$PROXY_PORT
r=$(loadgen replicas --target "127.0.0.1:$A_PORT" --target "127.0.0.1:$B_PORT" "${CONV[@]}")
record two_replicas replicas "$SCENARIO_POLICY" "$r" "$(stats_json "${PREFILL_PORTS[@]}")" \
  "$(stats_json "${DECODE_PORTS[@]}")"
stop_pid "$A_PID"
stop_pid "$B_PID"
# The one-replica figure to compare with, unless the table already has it.
if ! grep -q "\"kind\":\"policy\",\"label\":\"$SCENARIO_POLICY\"" "$RESULTS"; then
  run_policy "$SCENARIO_POLICY" "$SCENARIO_POLICY"
fi

log "scenario: 200 sequential requests over 4 prefillers + 4 decoders (default policy)"
for i in 2 3; do
  start_mock "decode-$i" "${DECODE_FLAGS[@]}"
  DECODE_PORTS+=("$MOCK_PORT")
  DECODE_ARGS+=(--decode "127.0.0.1:$MOCK_PORT")
done
reset_mocks "${PREFILL_PORTS[@]}" "${DECODE_PORTS[@]}"
start_proxy sequential default "${PREFILL_ARGS[@]}" "${DECODE_ARGS[@]}"
r=$(loadgen sequential --target "127.0.0.1:$PROXY_PORT" -c 1 -n 200 --prompt-words 64)
record sequential sequential default "$r" "$(stats_json "${PREFILL_PORTS[@]}")" \
  "$(stats_json "${DECODE_PORTS[@]}")"
stop_pid "$PROXY_PID"

python3 bench/routing_report.py "$RESULTS" --cache-blocks $CACHE_BLOCKS --prefillers 4 \
  --repro "$REPRO" --has-policies $HAS_POLICIES
log "raw results: $RESULTS"
