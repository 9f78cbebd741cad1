#!/usr/bin/env bash
# The local demo: installs what is missing, builds, starts 2 mock prefillers, 2 mock decoders and
# glm-proxy on loopback, and streams one completion through it with curl -N.
#   bash bench/demo.sh          # run the demo, then stop everything
#   bash bench/demo.sh --keep   # leave the cluster running for your own requests (Ctrl-C stops it)
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target glm-proxy mock-vllm

PORT=${PORT:-8000}
logs=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT

# Each mock prints "listening on HOST:PORT" once it accepts connections. Sets MOCK_PORT; called
# directly, not in $(...), whose subshell would lose the pid and leave the mock running on exit.
start_mock() {
  local name=$1; shift
  build/mock-vllm --host 127.0.0.1 --port 0 --engine-id "$name" "$@" >"$logs/$name.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do
    grep -q "listening on" "$logs/$name.log" && break
    sleep 0.05
  done
  MOCK_PORT=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$logs/$name.log")
}
start_mock prefill-0 --prefill-delay-ms 100 && p1=$MOCK_PORT
start_mock prefill-1 --prefill-delay-ms 100 && p2=$MOCK_PORT
start_mock decode-0 --token-interval-ms 80 && d1=$MOCK_PORT
start_mock decode-1 --token-interval-ms 80 && d2=$MOCK_PORT

build/glm-proxy --host 127.0.0.1 --port "$PORT" \
  --prefiller-hosts 127.0.0.1 127.0.0.1 --prefiller-ports "$p1" "$p2" \
  --decoder-hosts 127.0.0.1 127.0.0.1 --decoder-ports "$d1" "$d2" >"$logs/glm-proxy.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$PORT/healthcheck" >/dev/null && break
  sleep 0.05
done

echo "== glm-proxy on 127.0.0.1:$PORT: prefillers :$p1 :$p2, decoders :$d1 :$d2 (logs in $logs)"
echo "== curl http://127.0.0.1:$PORT/healthcheck"
curl -s "http://127.0.0.1:$PORT/healthcheck"; echo
echo "== curl -N http://127.0.0.1:$PORT/v1/completions (stream, 8 tokens)"
curl -sS -N "http://127.0.0.1:$PORT/v1/completions" -H 'Content-Type: application/json' \
  -d '{"model":"mock-model","prompt":"Hello from the glm-proxy demo","max_tokens":8,"stream":true}'
echo "== curl http://127.0.0.1:$PORT/v1/chat/completions (no stream)"
curl -sS "http://127.0.0.1:$PORT/v1/chat/completions" -H 'Content-Type: application/json' \
  -d '{"model":"mock-model","messages":[{"role":"user","content":"Hi"}],"max_tokens":4}'
echo
if [ "${1:-}" = "--keep" ]; then
  echo "== running; try: curl -N http://127.0.0.1:$PORT/v1/completions -d '{\"prompt\":\"hi\",\"stream\":true}'"
  echo "== Ctrl-C to stop"
  wait
fi
