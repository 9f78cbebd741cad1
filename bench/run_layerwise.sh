#!/usr/bin/env bash
# Layerwise benchmark (issue 15): the TTFT that --pd-mode layerwise adds over the standard mode,
# on the same mocks, side by side in one run. Prints one table and the command that reproduces it.
#
#   bash bench/run_layerwise.sh            # about a minute on 2 cores (plus the build)
#   bash bench/run_layerwise.sh --help
#
# Cluster, all on 127.0.0.1: one mock prefiller (--prefill-delay-ms D), one mock decoder in its
# --layerwise mode (a request with a metaserver URL calls back and waits; one without is a
# standard decode, so the same decoder serves both modes), and two glm-proxy --workers 1, one per
# mode, in front of them. glm-loadgen drives each in turn (closed loop, streaming
# /v1/completions, T tokens of a 64-word prompt), first 1 client then C clients, alternating
# standard and layerwise per round so that drift on the machine hits both alike.
#
# Both modes wait for the prefill once: standard = prefill, then decode; layerwise = decode,
# callback, prefill, callback answer, then decode. "added" = layerwise TTFT p50 - standard TTFT
# p50 at the same concurrency: the cost of the extra hops (decode request first, the callback
# and its answer), target <= 1 ms.
#
# Everything started here is stopped on exit; only 127.0.0.1 is used.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

BUILD=1
BUILD_DIR=$ROOT/build-bench
REQUESTS=400
CONCURRENCY=8
PREFILL_DELAY_MS=20
T=16
ROUNDS=2
usage() {
  sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'
  cat <<'EOF2'
Options:
  --build-dir DIR      CMake build directory (default build-bench)
  --no-build           use the binaries already in the build directory
  --requests N         requests per measurement (default 400)
  --concurrency C      clients of the second measurement (default 8)
  --prefill-delay-ms D the mock prefill's time (default 20)
  --rounds R           alternating rounds per mode and concurrency (default 2)
EOF2
}
while [ $# -gt 0 ]; do
  case $1 in
    --build-dir) BUILD_DIR=$(realpath -m "$2"); shift ;;
    --no-build) BUILD=0 ;;
    --requests) REQUESTS=$2; shift ;;
    --concurrency) CONCURRENCY=$2; shift ;;
    --prefill-delay-ms) PREFILL_DELAY_MS=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
REPRO="bash bench/run_layerwise.sh"
[ "$REQUESTS" = 400 ] || REPRO+=" --requests $REQUESTS"
[ "$CONCURRENCY" = 8 ] || REPRO+=" --concurrency $CONCURRENCY"
[ "$PREFILL_DELAY_MS" = 20 ] || REPRO+=" --prefill-delay-ms $PREFILL_DELAY_MS"
[ "$ROUNDS" = 2 ] || REPRO+=" --rounds $ROUNDS"
[ "$BUILD_DIR" = "$ROOT/build-bench" ] || REPRO+=" --build-dir ${BUILD_DIR#$ROOT/}"
[ $BUILD = 1 ] || REPRO+=" --no-build"

if [ $BUILD = 1 ]; then
  cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >&2
  cmake --build "$BUILD_DIR" -j"$(nproc)" --target glm-proxy mock-vllm glm-loadgen >&2
fi
for b in glm-proxy mock-vllm glm-loadgen; do
  [ -x "$BUILD_DIR/$b" ] || { echo "missing $BUILD_DIR/$b (build it, or drop --no-build)" >&2; exit 1; }
done

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# start NAME CMD...: runs CMD with its log in $WORK/NAME.log; sets PORT from "listening on".
start() {
  local name=$1
  shift
  "$@" >"$WORK/$name.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 200); do
    PORT=$(sed -n 's/.*listening on [^ ]*:\([0-9][0-9]*\).*/\1/p' "$WORK/$name.log" | head -1)
    [ -n "$PORT" ] && return 0
    sleep 0.05
  done
  echo "$name did not start:" >&2
  cat "$WORK/$name.log" >&2
  exit 1
}

start prefill "$BUILD_DIR/mock-vllm" --port 0 --prefill-delay-ms "$PREFILL_DELAY_MS"
P_PORT=$PORT
start decode "$BUILD_DIR/mock-vllm" --port 0 --layerwise
D_PORT=$PORT
PROXY=("$BUILD_DIR/glm-proxy" --host 127.0.0.1 --port 0 --log-level WARNING
       --prefill "127.0.0.1:$P_PORT" --decode "127.0.0.1:$D_PORT")
start standard "${PROXY[@]}"
S_PORT=$PORT
start layerwise "${PROXY[@]}" --pd-mode layerwise
L_PORT=$PORT

loadgen() {
  "$BUILD_DIR/glm-loadgen" --json-only --timeout 60 -t $T --prompt-words 64 "$@" |
    sed -n 's/^RESULT //p'
}

echo "mocks: prefiller :$P_PORT (--prefill-delay-ms $PREFILL_DELAY_MS), decoder :$D_PORT (--layerwise);" \
     "glm-proxy standard :$S_PORT, layerwise :$L_PORT" >&2
# Warm-up: connections pooled, code paged in.
loadgen --target "127.0.0.1:$S_PORT" -c 2 -n 40 >/dev/null
loadgen --target "127.0.0.1:$L_PORT" -c 2 -n 40 >/dev/null

: >"$WORK/results"
for c in 1 "$CONCURRENCY"; do
  for r in $(seq 1 "$ROUNDS"); do
    for mode in standard layerwise; do
      port=$S_PORT
      [ $mode = standard ] || port=$L_PORT
      echo "{\"mode\":\"$mode\",\"clients\":$c,\"result\":$(loadgen --target "127.0.0.1:$port" -c "$c" -n "$REQUESTS" --label "$mode")}" >>"$WORK/results"
    done
  done
done

python3 - "$WORK/results" "$REPRO" "$D_PORT" <<'PY'
import json, sys, urllib.request
rows = [json.loads(l) for l in open(sys.argv[1])]
def merged(mode, c):
    runs = [r["result"] for r in rows if r["mode"] == mode and r["clients"] == c]
    ok = sum(r["ok"] for r in runs)
    failed = sum(r["errors"] for r in runs)
    # The median of the rounds' percentiles (each round is REQUESTS requests).
    p = lambda k: sorted(r["ttft_ms"][k] for r in runs)[len(runs) // 2]
    return ok, failed, p("p50"), p("p99")
print(f"{'clients':>7}  {'mode':<9}  {'ok':>6} {'failed':>6}  {'TTFT p50 ms':>11}  {'p99 ms':>8}  added p50")
worst = None
for c in sorted({r["clients"] for r in rows}):
    s = merged("standard", c)
    l = merged("layerwise", c)
    added = l[2] - s[2]
    worst = added if worst is None else max(worst, added)
    print(f"{c:>7}  {'standard':<9}  {s[0]:>6} {s[1]:>6}  {s[2]:>11.3f}  {s[3]:>8.3f}")
    print(f"{c:>7}  {'layerwise':<9}  {l[0]:>6} {l[1]:>6}  {l[2]:>11.3f}  {l[3]:>8.3f}  {added:+.3f} ms")
stats = json.load(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[3]}/mock/stats"))
print(f"decoder callbacks: {stats['metaserver_calls']} ({stats['metaserver_failed']} failed)")
verdict = "meets" if worst is not None and worst <= 1.0 else "misses"
print(f"added TTFT p50 (layerwise - standard), worst concurrency: {worst:+.3f} ms ({verdict} the <= 1 ms target)")
print(f"reproduce: {sys.argv[2]}")
PY
