#!/usr/bin/env bash
# User-space instructions per request of glm-proxy binaries, counted by callgrind: unlike CPU time
# they do not move with what else runs on the machine, so a change of a few percent shows.
#
#   bash bench/run_instructions.sh [--build-dir build] [--shape burst|paced] [BINARY ...]
#
# Starts one mock prefiller and one mock decoder on 127.0.0.1, then for each binary runs
# `BINARY --workers 1` under `valgrind --tool=callgrind` twice, sending 300 and then 1,300
# streaming requests of 16 tokens (8 at once) with glm-loadgen, and prints the difference of the
# two totals divided by 1,000: start-up and shutdown cancel out. The kernel's share is not
# counted (see run_syscalls.sh for that). Installs valgrind (Debian package) if missing.
set -euo pipefail

BUILD_DIR=build
SHAPE=burst
BINARIES=()
while [ $# -gt 0 ]; do
  case $1 in
    --build-dir) BUILD_DIR=$2; shift 2 ;;
    --shape) SHAPE=$2; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) BINARIES+=("$1"); shift ;;
  esac
done
[ ${#BINARIES[@]} -gt 0 ] || BINARIES=("$BUILD_DIR/glm-proxy")
source "$(dirname "$0")/lib.sh"  # wait_listening, require_executables, set_decode_shape
require_executables "${BINARIES[@]}" "$BUILD_DIR/mock-vllm" "$BUILD_DIR/glm-loadgen"
set_decode_shape "$SHAPE" 2
if ! command -v valgrind >/dev/null; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq && $sudo apt-get install -y -qq valgrind >/dev/null
fi

WORK=$(mktemp -d /tmp/glm-instructions.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

"$BUILD_DIR/mock-vllm" --port 0 --engine-id p0 --prefill-delay-ms 1 >"$WORK/p.log" 2>&1 &
pids+=($!)
prefill=$(wait_listening "$WORK/p.log" $!)
"$BUILD_DIR/mock-vllm" --port 0 --engine-id d0 --prefill-delay-ms 1 "${decode_shape[@]}" \
  >"$WORK/d.log" 2>&1 &
pids+=($!)
decode=$(wait_listening "$WORK/d.log" $!)

# Total instructions of one run of BINARY serving N requests.
instructions() {
  local bin=$1 n=$2 out="$WORK/callgrind.$3.$2"
  valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" --host 127.0.0.1 --port 0 \
    --workers 1 --prefiller-hosts 127.0.0.1 --prefiller-ports "$prefill" \
    --decoder-hosts 127.0.0.1 --decoder-ports "$decode" >"$WORK/g.log" 2>&1 &
  local g=$!
  local port
  port=$(wait_listening "$WORK/g.log" $g)
  "$BUILD_DIR/glm-loadgen" --target "127.0.0.1:$port" --clients 8 --requests "$n" \
    --max-tokens 16 --prompt-words 64 --timeout 120 --json-only >"$WORK/load.json"
  grep -q '"errors":0' "$WORK/load.json" || { echo "failed requests:" >&2; cat "$WORK/load.json" >&2; exit 1; }
  kill -TERM $g
  wait $g 2>/dev/null || true
  sed -n 's/^\(summary\|totals\): *\([0-9]*\).*/\2/p' "$out" | head -1
}

echo "user-space instructions per request, $SHAPE shape, 16 tokens, 8 streams (callgrind)"
for k in "${!BINARIES[@]}"; do
  bin=${BINARIES[$k]}
  small=$(instructions "$bin" 300 "$k")
  large=$(instructions "$bin" 1300 "$k")
  echo "  $bin: $(( (large - small) / 1000 )) instructions/request"
done
echo "reproduce: bash bench/run_instructions.sh --build-dir $BUILD_DIR --shape $SHAPE ${BINARIES[*]}"
