#!/usr/bin/env bash
# A/B of glm-proxy binaries on the same mocks: CPU per request, alternating the binaries round by
# round so that drift on a shared machine hits each of them alike.
#
#   bash bench/run_ab.sh [--build-dir build] [--shape burst|paced] [--clients 32] [--seconds 6]
#                        [--rounds 4] [--prompt-bytes N] BINARY [BINARY ...]
#
# Starts 2 mock prefillers and 2 mock decoders (mocks and load generator on CPU 0), then for each
# round and each binary a fresh `BINARY --workers 1` pinned to CPU 1, drives it with glm-loadgen
# for --seconds (after a 1 s warm-up), and reads the relay's on-CPU time from
# /proc/PID/task/*/schedstat. Prints per binary the median and every round's CPU per request, and
# the ratio of each binary's median to the first's. Talks only to 127.0.0.1; stops what it starts.
set -euo pipefail

BUILD_DIR=build
SHAPE=burst
CLIENTS=32
SECONDS_EACH=6
ROUNDS=4
PROMPT=(--prompt-words 64)
BINARIES=()
while [ $# -gt 0 ]; do
  case $1 in
    --build-dir) BUILD_DIR=$2; shift 2 ;;
    --shape) SHAPE=$2; shift 2 ;;
    --clients) CLIENTS=$2; shift 2 ;;
    --seconds) SECONDS_EACH=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --prompt-bytes) PROMPT=(--prompt-bytes "$2"); shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) BINARIES+=("$1"); shift ;;
  esac
done
[ ${#BINARIES[@]} -gt 0 ] || BINARIES=("$BUILD_DIR/glm-proxy")
source "$(dirname "$0")/lib.sh"  # wait_listening, require_executables, set_decode_shape
require_executables "${BINARIES[@]}" "$BUILD_DIR/mock-vllm" "$BUILD_DIR/glm-loadgen"
set_decode_shape "$SHAPE" 10

WORK=$(mktemp -d /tmp/glm-ab.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT


prefill=() decode=()
for i in 0 1; do
  taskset -c 0 "$BUILD_DIR/mock-vllm" --port 0 --engine-id "p$i" --prefill-delay-ms 20 \
    >"$WORK/p$i.log" 2>&1 &
  pids+=($!)
  prefill+=("$(wait_listening "$WORK/p$i.log" $!)")
  taskset -c 0 "$BUILD_DIR/mock-vllm" --port 0 --engine-id "d$i" --prefill-delay-ms 20 \
    "${decode_shape[@]}" >"$WORK/d$i.log" 2>&1 &
  pids+=($!)
  decode+=("$(wait_listening "$WORK/d$i.log" $!)")
done

# The on-CPU nanoseconds of every thread of a process.
cpu_ns() {
  cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%d\n", s}'
}

load=(--clients "$CLIENTS" --max-tokens 16 "${PROMPT[@]}" --timeout 60 --json-only)
for round in $(seq "$ROUNDS"); do
  for k in "${!BINARIES[@]}"; do
    bin=${BINARIES[$k]}
    taskset -c 1 "$bin" --host 127.0.0.1 --port 0 --workers 1 \
      --prefiller-hosts 127.0.0.1 127.0.0.1 --prefiller-ports "${prefill[@]}" \
      --decoder-hosts 127.0.0.1 127.0.0.1 --decoder-ports "${decode[@]}" \
      >"$WORK/g.log" 2>&1 &
    gpid=$!
    pids+=($gpid)
    gport=$(wait_listening "$WORK/g.log" $gpid)
    taskset -c 0 "$BUILD_DIR/glm-loadgen" --target "127.0.0.1:$gport" "${load[@]}" --duration 1 \
      >/dev/null
    before=$(cpu_ns $gpid)
    r=$(taskset -c 0 "$BUILD_DIR/glm-loadgen" --target "127.0.0.1:$gport" "${load[@]}" \
      --duration "$SECONDS_EACH" | sed -n 's/^RESULT //p')
    after=$(cpu_ns $gpid)
    kill $gpid 2>/dev/null || true
    wait $gpid 2>/dev/null || true
    echo "$r" | python3 -c '
import json, sys
r = json.load(sys.stdin)
k, before, after = sys.argv[1:4]
print(json.dumps({"k": int(k), "ok": r["ok"], "errors": r["errors"],
                  "cpu_ms": (int(after) - int(before)) / 1e6 / max(r["ok"], 1)}))' \
      "$k" "$before" "$after" >>"$WORK/ab.jsonl"
  done
done

python3 - "$WORK/ab.jsonl" "$SHAPE" "$CLIENTS" "${PROMPT[*]}" "${BINARIES[@]}" <<'EOF'
import json, statistics, sys
path, shape, clients, prompt, *bins = sys.argv[1:]
rows = [json.loads(line) for line in open(path)]
print(f"CPU per request, {shape} shape, {clients} streams, {prompt}, "
      f"{len(rows) // len(bins)} rounds alternated")
base = None
for k, b in enumerate(bins):
    mine = [r for r in rows if r["k"] == k]
    med = statistics.median(r["cpu_ms"] for r in mine)
    base = base or med
    errs = sum(r["errors"] for r in mine)
    each = " ".join(f"{r['cpu_ms']:.3f}" for r in mine)
    print(f"  {b}: median {med:.3f} ms ({med / base:.2f}x the first)  rounds: {each}"
          f"  errors {errs}")
EOF
