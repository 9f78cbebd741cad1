#!/usr/bin/env bash
# Syscalls per request (strace -c) of glm-proxy and of nginx, in both stream shapes, on the same
# mock backends: the kernel-crossing half of the relay's cost, which CPU timings on a shared
# machine blur. Counts are exact, not timed, so they need no quiet machine.
#
#   bash bench/run_syscalls.sh [--build-dir DIR] [--requests N] [--clients C] [--proxy BIN]
#
# For each shape (paced: one token every 10 ms, one event per read; burst: mock-vllm --burst
# --token-interval-ms 0, a whole stream in one write) it starts 2 mock prefillers and 2 mock
# decoders, then glm-proxy --workers 1 under `strace -c -f`, sends N streaming requests of 16
# tokens through it with glm-loadgen (C at once), stops it and prints the calls per request;
# then the same with nginx (one worker, proxy_buffering off, keep-alive upstream; its worker is
# traced). --proxy runs another glm-proxy binary (an older build, for a before/after). Installs
# strace and nginx (Debian packages) if missing.
# Everything listens on 127.0.0.1 and is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD_DIR=$ROOT/build-bench
REQUESTS=400
CLIENTS=8
PROXY=""
while [ $# -gt 0 ]; do
  case $1 in
    --build-dir) BUILD_DIR=$(realpath -m "$2"); shift ;;
    --requests) REQUESTS=$2; shift ;;
    --clients) CLIENTS=$2; shift ;;
    --proxy) PROXY=$(realpath -m "$2"); shift ;;
    -h | --help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
PROXY=${PROXY:-$BUILD_DIR/glm-proxy}
for b in "$PROXY" "$BUILD_DIR/mock-vllm" "$BUILD_DIR/glm-loadgen"; do
  [ -x "$b" ] || { echo "missing $b (build glm-proxy, mock-vllm, glm-loadgen)" >&2; exit 1; }
done
# strace and nginx are Debian packages, installed here when missing (as run_bench.sh does).
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
missing=()
command -v strace >/dev/null 2>&1 || missing+=(strace)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}" >&2
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

WORK=$(mktemp -d /tmp/glm-syscalls.XXXXXX)
chmod 755 "$WORK"
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

source bench/lib.sh  # wait_listening, free_port (the working directory is the repository)
# Prints "calls/request total, then the busiest calls" from an strace -c summary.
per_request() {
  python3 - "$1" "$2" <<'EOF'
import sys
path, n = sys.argv[1], int(sys.argv[2])
rows = []
for line in open(path):
    f = line.split()
    # "% time seconds usecs/call calls [errors] syscall"
    if len(f) >= 5 and f[0].replace(".", "").isdigit() and f[-1] != "total":
        calls = int(f[3])
        errors = int(f[4]) if len(f) == 6 else 0
        rows.append((calls, errors, f[-1]))
total = sum(r[0] for r in rows)
rows.sort(reverse=True)
top = ", ".join(f"{name} {c / n:.1f}" + (f" ({e / n:.1f} failed)" if e else "")
                for c, e, name in rows[:7])
print(f"{total / n:6.1f} syscalls/request: {top}")
EOF
}

run_shape() {
  local shape=$1 interval=$2
  shift 2
  local prefill=() decode=() mocks=() i port
  for i in 0 1; do
    "$BUILD_DIR/mock-vllm" --port 0 --engine-id "p$i" --prefill-delay-ms 1 >"$WORK/p$i.log" 2>&1 &
    pids+=($!) mocks+=($!)
    prefill+=("$(wait_listening "$WORK/p$i.log" $!)")
    "$BUILD_DIR/mock-vllm" --port 0 --engine-id "d$i" --prefill-delay-ms 1 \
      --token-interval-ms "$interval" "$@" >"$WORK/d$i.log" 2>&1 &
    pids+=($!) mocks+=($!)
    decode+=("$(wait_listening "$WORK/d$i.log" $!)")
  done
  local load=(--clients "$CLIENTS" --requests "$REQUESTS" --max-tokens 16 --prompt-words 64 --timeout 60 --json-only)

  # glm-proxy under strace (its default log level: the access line of each request is counted).
  strace -c -f -o "$WORK/glm-$shape.strace" "$PROXY" --host 127.0.0.1 --port 0 --workers 1 \
    --prefiller-hosts 127.0.0.1 127.0.0.1 --prefiller-ports "${prefill[@]}" \
    --decoder-hosts 127.0.0.1 127.0.0.1 --decoder-ports "${decode[@]}" >"$WORK/glm-$shape.log" 2>&1 &
  local tracer=$!
  pids+=($tracer)
  local gport
  gport=$(wait_listening "$WORK/glm-$shape.log" $tracer)
  local r
  r=$("$BUILD_DIR/glm-loadgen" --target "127.0.0.1:$gport" "${load[@]}" | sed -n 's/^RESULT //p')
  local ok
  ok=$(echo "$r" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ok"])')
  kill -TERM "$(pgrep -P "$tracer" | head -1)" 2>/dev/null || true
  wait "$tracer" 2>/dev/null || true
  echo "  $shape glm-proxy ($ok ok): $(per_request "$WORK/glm-$shape.strace" "$ok")"

  local dir=$WORK/nginx-$shape nport
  nport=$(free_port)
  mkdir -p "$dir/logs"
  cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $dir/client_body;
  proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi;
  uwsgi_temp_path $dir/uwsgi;
  scgi_temp_path $dir/scgi;
  upstream decoders {
    server 127.0.0.1:${decode[0]};
    server 127.0.0.1:${decode[1]};
    keepalive 1024;
  }
  server {
    listen 127.0.0.1:$nport;
    location / {
      proxy_pass http://decoders;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
}
EOF
  "$NGINX" -p "$dir" -e "$dir/logs/error.log" -c "$dir/nginx.conf" -g 'daemon off;' >/dev/null 2>&1 &
  local master=$! worker=""
  pids+=($master)
  for i in $(seq 100); do
    worker=$(pgrep -P "$master" | head -1 || true)
    [ -n "$worker" ] && curl -s -o /dev/null "http://127.0.0.1:$nport/" && break
    worker=""
    sleep 0.05
  done
  [ -n "$worker" ] || { echo "nginx did not start" >&2; exit 1; }
  strace -c -f -o "$WORK/nginx-$shape.strace" -p "$worker" 2>/dev/null &
  local ntracer=$!
  sleep 0.5
  r=$("$BUILD_DIR/glm-loadgen" --target "127.0.0.1:$nport" "${load[@]}" | sed -n 's/^RESULT //p')
  ok=$(echo "$r" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ok"])')
  kill -INT "$ntracer" 2>/dev/null || true
  wait "$ntracer" 2>/dev/null || true
  kill "$master" 2>/dev/null || true
  wait "$master" 2>/dev/null || true
  echo "  $shape nginx     ($ok ok): $(per_request "$WORK/nginx-$shape.strace" "$ok")"
  for i in "${mocks[@]}"; do kill "$i" 2>/dev/null || true; wait "$i" 2>/dev/null || true; done
}

echo "syscalls per request, $REQUESTS requests of 16 tokens, $CLIENTS at once; glm-proxy $PROXY"
echo "reproduce: bash bench/run_syscalls.sh --requests $REQUESTS --clients $CLIENTS${PROXY:+ --proxy $PROXY}"
run_shape paced 10
run_shape burst 0 --burst
echo "(strace -c counts every syscall of the process from start to stop, startup included;"
echo " glm-proxy makes two upstream calls per request, nginx one)"
echo "raw: $WORK"
