#!/usr/bin/env bash
# glm-proxy's relay benchmark (issues 4 and 14): glm-proxy vs nginx vs no relay, in front of mock
# vLLM servers on loopback, measured side by side in one run. Prints every figure next to its target.
#
#   bash bench/run_bench.sh            # full run (~10 min)
#   bash bench/run_bench.sh --quick    # short run (~4 min), coarser figures
#   bash bench/run_bench.sh --help
#
# What it does: installs nginx if missing, builds glm-proxy, mock-vllm and glm-loadgen, starts
# 2 mock prefillers and 2 mock decoders on 127.0.0.1, then per scenario starts a fresh relay and
# drives it with glm-loadgen (closed loop, streaming /v1/completions, T tokens per answer):
#   glm     glm-proxy --workers 1: prefill on a prefiller, then the decode stream from a decoder
#   nginx   nginx, one worker, proxy_buffering off, HTTP/1.1 keep-alive upstream: a plain one-hop
#           streaming relay to the same decoders (plain requests, no prefill step)
#   direct  the load generator talks to the decoders itself (plain requests)
# Two stream shapes: paced (one token every --token-interval-ms: one event per read) and burst
# (mock-vllm --burst --token-interval-ms 0: a stream's events arrive in one write, so reads hold
# many events, as when a decoder is ahead of the proxy). And glm-proxy --workers 2 next to
# --workers 1 (both unpinned) on the burst shape: a figure, not a target, on a 2-core machine.
# Fair TTFT: every mock runs with the same --prefill-delay-ms, which a prefiller spends before its
# answer and a decoder spends before the first token of a *plain* request. So a PD request and a
# plain request both wait prefill-delay + token-interval before the first token; "added TTFT" is
# glm's TTFT percentile minus direct's at the same concurrency.
# CPU: utime+stime of the relay process(es) from /proc/PID/stat (clock ticks) and, in ns, the sum
# of /proc/PID/task/*/schedstat, before and after the measured run, divided by the requests that
# completed. Peak RSS: VmHWM from /proc/PID/status (nginx: its worker).
# Cores: the relay is pinned to CPU 1; the load generator and the mocks share CPU 0 (taskset), so
# the relay has a core of its own. Other work on the machine (compiles) skews the figures, so as
# root every process started here runs at nice -10 (--no-nice: not; --rt: SCHED_FIFO instead,
# which the kernel's RT throttling still caps at 95 % of each core), and each measurement prints
# how busy each core was and how long the relay waited for its core ("wait"): with other work on
# the machine, the scheduler's wake-up latency, not the relay, can dominate TTFT.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

QUICK=0
BUILD=1
HOLD=8000
BUILD_DIR=$ROOT/build-bench
DURATION=""
PIN=1
NICE=1
RT=0
SCENARIOS="s32 s128 b32 workers prompt hold"
usage() {
  sed -n '2,34p' "$0" | sed 's/^# \{0,1\}//'
  cat <<'EOF'
Options:
  --quick            short runs (4 s per measurement, fewer 1 MiB requests, shorter held streams)
  --duration S       seconds per closed-loop measurement (default 20, quick 4)
  --hold N           streams held open at once through glm-proxy (default 8000; 0 skips)
  --scenarios "A B"  run only these (default "s32 s128 b32 workers prompt hold"): s32/s128 paced
                     streams, b32 burst streams, workers --workers 1 vs 2, prompt 1 MiB, hold
  --build-dir DIR    CMake build directory (default build-bench)
  --no-build         use the binaries already in the build directory
  --no-pin           do not pin processes to cores
  --no-nice          do not raise the priority of the processes started here
  --rt               run them SCHED_FIFO (chrt -f 1): figures free of other load on a shared
                     machine, at the cost of starving that load while the benchmark runs
EOF
}
while [ $# -gt 0 ]; do
  case $1 in
    --quick) QUICK=1 ;;
    --duration) DURATION=$2; shift ;;
    --hold) HOLD=$2; shift ;;
    --scenarios) SCENARIOS=$2; shift ;;
    --build-dir) BUILD_DIR=$(realpath -m "$2"); shift ;;
    --no-build) BUILD=0 ;;
    --no-pin) PIN=0 ;;
    --no-nice) NICE=0 ;;
    --rt) RT=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
REPRO="bash bench/run_bench.sh"
[ $QUICK = 0 ] || REPRO+=" --quick"
[ -z "$DURATION" ] || REPRO+=" --duration $DURATION"
[ "$HOLD" = 8000 ] || REPRO+=" --hold $HOLD"
[ "$SCENARIOS" = "s32 s128 b32 workers prompt hold" ] || REPRO+=" --scenarios \"$SCENARIOS\""
wants() { [[ " $SCENARIOS " == *" $1 "* ]]; }
[ $PIN = 1 ] || REPRO+=" --no-pin"
[ $NICE = 1 ] || REPRO+=" --no-nice"
[ $RT = 0 ] || REPRO+=" --rt"

# Mock settings and scenario sizes.
PREFILL_DELAY_MS=20
TOKEN_INTERVAL_MS=10
T=16
# Hold: connects are spread over HOLD_RAMP seconds because each new stream costs glm-proxy about
# a millisecond of CPU (two upstream connections, the prefill): 8,000 connects in a few seconds
# saturate its one core and its accept queue grows, which measures throughput, not holding.
# Streams last HOLD_T * HOLD_INTERVAL_MS, so all are open at once between the end of the ramp and
# the end of the first stream.
if [ $QUICK = 1 ]; then
  DURATION=${DURATION:-4}
  PROMPT_REQUESTS=60
  HOLD_INTERVAL_MS=2000 HOLD_T=10 HOLD_RAMP=12  # 20 s streams, all open from 12 s to 20 s
else
  DURATION=${DURATION:-20}
  PROMPT_REQUESTS=300
  HOLD_INTERVAL_MS=2000 HOLD_T=20 HOLD_RAMP=20  # 40 s streams, all open from 20 s to 40 s
fi
WARMUP_S=1

log() { echo "== $*" >&2; }

# --- install and build ---------------------------------------------------------------------------
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  log "installing nginx"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends nginx
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
if [ $BUILD = 1 ]; then
  bash .ci/install-deps.sh
  log "building in $BUILD_DIR"
  cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$BUILD_DIR" -j"$(nproc)" --target glm-proxy mock-vllm glm-loadgen >&2
fi
for b in glm-proxy mock-vllm glm-loadgen; do
  [ -x "$BUILD_DIR/$b" ] || { echo "missing $BUILD_DIR/$b (drop --no-build)" >&2; exit 1; }
done

# 8,000 streams: glm-proxy holds 2 descriptors per stream, the load generator 1.
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
NOFILE=$(ulimit -n)

# --- process bookkeeping: everything started here is stopped on exit -----------------------------
WORK=$(mktemp -d /tmp/glm-bench.XXXXXX)
chmod 755 "$WORK"  # nginx's worker (user nobody) reads its temp dirs under here
RESULTS=$WORK/measures.jsonl
: >"$RESULTS"
pids=()
cleanup() {
  local rc=$?
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ $rc -ne 0 ]; then echo "run_bench: failed (rc $rc); logs kept in $WORK" >&2; fi
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
# Command prefixes, not functions: a function run with & is a subshell whose $! is not the
# server's PID, and killing it would leave the server running. taskset execs its command.
CPU0=() CPU1=() CPU_ANY=()
if [ $PIN = 1 ]; then CPU0=(taskset -c 0) CPU1=(taskset -c 1); fi
PRIORITY="normal"
if [ $RT = 1 ]; then
  CPU0=(chrt -f 1 "${CPU0[@]}") CPU1=(chrt -f 1 "${CPU1[@]}") CPU_ANY=(chrt -f 1)
  PRIORITY="SCHED_FIFO 1"
elif [ $NICE = 1 ] && [ "$(id -u)" -eq 0 ]; then
  CPU0=(nice -n -10 "${CPU0[@]}") CPU1=(nice -n -10 "${CPU1[@]}") CPU_ANY=(nice -n -10)
  PRIORITY="nice -10"
fi
source bench/lib.sh  # wait_listening, free_port (the working directory is the repository)

# Sets MOCK_PORT.
start_mock() {
  local name=$1
  "${CPU0[@]}" "$BUILD_DIR/mock-vllm" --host 127.0.0.1 --port 0 --engine-id "$name" "${@:2}" \
    >"$WORK/$name.log" 2>&1 &
  pids+=($!)
  MOCK_PORT=$(wait_listening "$WORK/$name.log" $!)
}
# Sets PREFILL_PORTS, DECODE_PORTS, MOCK_PIDS for a cluster of 2 + 2. Extra arguments go to
# the decoders (--burst).
start_cluster() {
  local tag=$1 interval=$2 i
  PREFILL_PORTS=() DECODE_PORTS=() MOCK_PIDS=()
  for i in 0 1; do
    start_mock "$tag-prefill-$i" --prefill-delay-ms $PREFILL_DELAY_MS --keep-alive-timeout-ms 5000
    PREFILL_PORTS+=("$MOCK_PORT") MOCK_PIDS+=("${pids[-1]}")
  done
  for i in 0 1; do
    # The same prefill delay: a plain request (nginx, direct) waits it before its first token.
    start_mock "$tag-decode-$i" --prefill-delay-ms $PREFILL_DELAY_MS \
      --token-interval-ms "$interval" --keep-alive-timeout-ms 5000 "${@:3}"
    DECODE_PORTS+=("$MOCK_PORT") MOCK_PIDS+=("${pids[-1]}")
  done
}
stop_cluster() {
  local p
  for p in "${MOCK_PIDS[@]}"; do stop_pid "$p"; done
}

# Sets RELAY_PORT and RELAY_PIDS (the processes whose CPU counts; the first one's RSS counts).
# start_glm TAG [WORKERS [unpinned]]
start_glm() {
  local logf=$WORK/glm-proxy-$1.log workers=${2:-1}
  local cpu=("${CPU1[@]}")
  if [ "${3:-}" = unpinned ]; then cpu=("${CPU_ANY[@]}"); fi
  "${cpu[@]}" "$BUILD_DIR/glm-proxy" --host 127.0.0.1 --port 0 --workers "$workers" \
    --prefiller-hosts 127.0.0.1 127.0.0.1 --prefiller-ports "${PREFILL_PORTS[@]}" \
    --decoder-hosts 127.0.0.1 127.0.0.1 --decoder-ports "${DECODE_PORTS[@]}" >"$logf" 2>&1 &
  pids+=($!)
  RELAY_PIDS=($!)
  RELAY_PORT=$(wait_listening "$logf" $!)
}
start_nginx() {
  local dir=$WORK/nginx-$1 port
  port=$(free_port)
  mkdir -p "$dir/logs"
  cat >"$dir/nginx.conf" <<EOF
# A plain one-hop streaming relay: the yardstick glm-proxy's CPU is compared with.
worker_processes 1;
worker_rlimit_nofile 20000;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 20000; }
http {
  access_log off;
  client_body_temp_path $dir/client_body;
  proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi;
  uwsgi_temp_path $dir/uwsgi;
  scgi_temp_path $dir/scgi;
  client_max_body_size 64m;
  keepalive_requests 1000000;
  upstream decoders {
    server 127.0.0.1:${DECODE_PORTS[0]};
    server 127.0.0.1:${DECODE_PORTS[1]};
    keepalive 1024;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:$port backlog=4096;
    location / {
      proxy_pass http://decoders;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_read_timeout 600s;
    }
  }
}
EOF
  "${CPU1[@]}" "$NGINX" -p "$dir" -e "$dir/logs/error.log" -c "$dir/nginx.conf" -g 'daemon off;' \
    >"$dir/logs/stdout.log" 2>&1 &
  local master=$!
  pids+=($master)
  local i worker=""
  for i in $(seq 100); do
    worker=$(ps -o pid= --ppid "$master" 2>/dev/null | head -1 | tr -d ' ' || true)
    if [ -n "$worker" ] && curl -s -o /dev/null "http://127.0.0.1:$port/"; then break; fi
    worker=""
    sleep 0.05
  done
  [ -n "$worker" ] || { echo "nginx did not start:" >&2; cat "$dir"/logs/*.log >&2; return 1; }
  RELAY_PORT=$port
  RELAY_PIDS=("$worker" "$master")
}
stop_relay() {
  # nginx: stopping the master stops its worker; the worker is not our child.
  local p
  for p in "${RELAY_PIDS[@]}"; do
    if [[ " ${pids[*]} " == *" $p "* ]]; then stop_pid "$p"; fi
  done
  RELAY_PIDS=()
}

# --- /proc readings ------------------------------------------------------------------------------
cpu_ticks() {  # utime+stime, summed over the given processes
  local total=0 p f
  for p in "$@"; do
    # Fields after the ")" that closes the command name: utime is the 12th, stime the 13th.
    f=$(sed 's/.*) //' "/proc/$p/stat")
    total=$((total + $(echo "$f" | awk '{print $12 + $13}')))
  done
  echo $total
}
cpu_ns() {  # on-CPU time in ns from the scheduler, summed over every thread
  schedstat_sum 1 "$@"
}
wait_ns() {  # time spent runnable but waiting for a CPU, in ns: the cost of sharing the core
  schedstat_sum 2 "$@"
}
schedstat_sum() {
  local field=$1 total=0 p t
  shift
  for p in "$@"; do
    for t in /proc/"$p"/task/*/schedstat; do
      total=$((total + $(cut -d' ' -f"$field" "$t" 2>/dev/null || echo 0)))
    done
  done
  echo $total
}
status_kib() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
cpu_busy_idle() {  # "busy idle" jiffies of every core, e.g. "cpu0 120 880 cpu1 ..."
  awk '/^cpu[0-9]+ / {printf "%s %d %d ", $1, $2 + $3 + $4 + $7 + $8 + $9, $5 + $6}' /proc/stat
}
cpu_busy_json() {  # cpu_busy_json BEFORE AFTER -> {"cpu0":0.93,...} busy fractions in between
  python3 -c 'import json, sys
a, b = sys.argv[1].split(), sys.argv[2].split()
out = {}
for i in range(0, len(a), 3):
    busy, idle = int(b[i + 1]) - int(a[i + 1]), int(b[i + 2]) - int(a[i + 2])
    out[a[i]] = round(busy / (busy + idle), 3) if busy + idle else 0
print(json.dumps(out))' "$1" "$2"
}

loadgen() {
  "${CPU0[@]}" "$BUILD_DIR/glm-loadgen" --json-only "$@" | sed -n 's/^RESULT //p'
}

# measure SCENARIO TARGET PIDS-OR-"-" LOADGEN-ARGS...: warm up, then one measured run.
measure() {
  local scenario=$1 target=$2 relay_pids=$3
  shift 3
  local args=("$@")
  local pidlist=()
  [ "$relay_pids" = "-" ] || read -r -a pidlist <<<"$relay_pids"
  loadgen "${args[@]}" --duration $WARMUP_S --requests 0 --label warmup >/dev/null
  local t0=0 n0=0 w0=0 t1=0 n1=0 w1=0 hwm=0 rss=0 busy0 busy
  if [ ${#pidlist[@]} -gt 0 ]; then
    t0=$(cpu_ticks "${pidlist[@]}")
    n0=$(cpu_ns "${pidlist[@]}")
    w0=$(wait_ns "${pidlist[@]}")
  fi
  busy0=$(cpu_busy_idle)
  local result
  result=$(loadgen "${args[@]}" --label "$scenario/$target")
  busy=$(cpu_busy_json "$busy0" "$(cpu_busy_idle)")
  if [ ${#pidlist[@]} -gt 0 ]; then
    t1=$(cpu_ticks "${pidlist[@]}")
    n1=$(cpu_ns "${pidlist[@]}")
    w1=$(wait_ns "${pidlist[@]}")
    hwm=$(status_kib "${pidlist[0]}" VmHWM)
    rss=$(status_kib "${pidlist[0]}" VmRSS)
  fi
  echo "{\"scenario\":\"$scenario\",\"target\":\"$target\",\"cpu_ticks\":$((t1 - t0)),\"cpu_ns\":$((n1 - n0)),\"wait_ns\":$((w1 - w0)),\"hwm_kib\":$hwm,\"rss_kib\":$rss,\"cpu_busy\":$busy,\"result\":$result}" \
    >>"$RESULTS"
  python3 - "$RESULTS" <<'EOF'
import json, sys
m = [json.loads(l) for l in open(sys.argv[1])][-1]
r = m["result"]
cpu = m["cpu_ns"] / 1e6 / r["ok"] if r["ok"] else 0
print(f"   {m['scenario']:>9} {m['target']:<7} ok {r['ok']:>6} err {r['errors']:>4} "
      f"{r['rps']:>8.1f} req/s  TTFT p50 {r['ttft_ms']['p50']:7.2f} p99 {r['ttft_ms']['p99']:7.2f}  "
      f"gap p99 {r['gap_ms']['p99']:6.2f}  cpu {cpu:6.3f} ms/req  busy {m['cpu_busy']}  {r['error_kinds'] or ''}",
      file=sys.stderr)
EOF
}

# --- the run -------------------------------------------------------------------------------------
CPU_MODEL=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
log "machine: $(nproc) cores, $CPU_MODEL; load average at start: $LOADAVG"
log "$("$NGINX" -v 2>&1); glm-proxy $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo ?)$(git -C "$ROOT" diff --quiet 2>/dev/null || echo +dirty); ulimit -n $NOFILE; work dir $WORK"
CLK_TCK=$(getconf CLK_TCK)

COMMON=(--max-tokens $T --prompt-words 64 --duration "$DURATION" --timeout 60)
# glm, nginx and direct at the same concurrency on the running cluster.
relay_trio() {
  local scenario=$1 streams=$2
  start_glm "$scenario"
  measure $scenario glm "${RELAY_PIDS[*]}" --target "127.0.0.1:$RELAY_PORT" -c $streams "${COMMON[@]}"
  stop_relay
  start_nginx "$scenario"
  measure $scenario nginx "${RELAY_PIDS[*]}" --target "127.0.0.1:$RELAY_PORT" -c $streams "${COMMON[@]}"
  stop_relay
  measure $scenario direct - "${DIRECT_TARGETS[@]}" -c $streams "${COMMON[@]}"
}

if wants s32 || wants s128 || wants prompt; then
  start_cluster main $TOKEN_INTERVAL_MS
  DIRECT_TARGETS=(--target "127.0.0.1:${DECODE_PORTS[0]}" --target "127.0.0.1:${DECODE_PORTS[1]}")
  for streams in 32 128; do
    scenario=s$streams
    wants $scenario || continue
    log "scenario $scenario: $streams concurrent paced streams, T=$T, 64-word prompt, ${DURATION}s each"
    relay_trio $scenario $streams
  done

  if wants prompt; then
    log "scenario prompt: glm-proxy CPU per request, 1 MiB prompt vs 64 words, 8 streams, $PROMPT_REQUESTS requests each"
    PROMPT_ARGS=(-c 8 --max-tokens $T --requests $PROMPT_REQUESTS --timeout 60)
    start_glm prompt64
    measure prompt glm-64w "${RELAY_PIDS[*]}" --target "127.0.0.1:$RELAY_PORT" "${PROMPT_ARGS[@]}" --prompt-words 64
    stop_relay
    start_nginx prompt64
    measure prompt nginx-64w "${RELAY_PIDS[*]}" --target "127.0.0.1:$RELAY_PORT" "${PROMPT_ARGS[@]}" --prompt-words 64
    stop_relay
    start_glm prompt1m
    measure prompt glm-1MiB "${RELAY_PIDS[*]}" --target "127.0.0.1:$RELAY_PORT" "${PROMPT_ARGS[@]}" --prompt-bytes 1048576
    stop_relay
    start_nginx prompt1m
    measure prompt nginx-1MiB "${RELAY_PIDS[*]}" --target "127.0.0.1:$RELAY_PORT" "${PROMPT_ARGS[@]}" --prompt-bytes 1048576
    stop_relay
  fi
  stop_cluster
fi

if wants b32 || wants workers; then
  # Burst: every decoder stream arrives in one write (tokens, usage, [DONE], last chunk).
  start_cluster burst 0 --burst
  DIRECT_TARGETS=(--target "127.0.0.1:${DECODE_PORTS[0]}" --target "127.0.0.1:${DECODE_PORTS[1]}")
  if wants b32; then
    log "scenario b32: 32 concurrent burst streams (mock-vllm --burst --token-interval-ms 0), T=$T, ${DURATION}s each"
    relay_trio b32 32
  fi
  if wants workers; then
    log "scenario workers: glm-proxy --workers 1 vs 2, unpinned, 128 burst streams, ${DURATION}s each"
    for w in 1 2; do
      start_glm workers$w $w unpinned
      measure workers glm-w$w "${RELAY_PIDS[*]}" --target "127.0.0.1:$RELAY_PORT" -c 128 "${COMMON[@]}"
      stop_relay
    done
  fi
  stop_cluster
fi

if [ "$HOLD" -gt 0 ] && wants hold; then
  hold_secs=$((HOLD_INTERVAL_MS * HOLD_T / 1000))
  log "scenario hold: $HOLD streams open at once (${hold_secs}s streams of $HOLD_T tokens, connects over ${HOLD_RAMP}s)"
  start_cluster hold $HOLD_INTERVAL_MS
  for target in glm nginx; do
    if [ $target = glm ]; then start_glm hold; else start_nginx hold; fi
    # A few short requests first so the idle figure includes a warmed-up allocator.
    loadgen --target "127.0.0.1:$RELAY_PORT" -c 4 --requests 8 --max-tokens 1 --timeout 30 >/dev/null
    idle=$(status_kib "${RELAY_PIDS[0]}" VmRSS)
    t0=$(cpu_ticks "${RELAY_PIDS[@]}")
    n0=$(cpu_ns "${RELAY_PIDS[@]}")
    busy0=$(cpu_busy_idle)
    result=$(loadgen --target "127.0.0.1:$RELAY_PORT" --hold "$HOLD" --ramp $HOLD_RAMP \
      --max-tokens $HOLD_T --prompt-words 64 --timeout $((hold_secs * 3 + 60)) --label hold/$target)
    t1=$(cpu_ticks "${RELAY_PIDS[@]}")
    n1=$(cpu_ns "${RELAY_PIDS[@]}")
    hwm=$(status_kib "${RELAY_PIDS[0]}" VmHWM)
    busy=$(cpu_busy_json "$busy0" "$(cpu_busy_idle)")
    echo "{\"scenario\":\"hold\",\"target\":\"$target\",\"cpu_ticks\":$((t1 - t0)),\"cpu_ns\":$((n1 - n0)),\"hwm_kib\":$hwm,\"idle_rss_kib\":$idle,\"cpu_busy\":$busy,\"result\":$result}" >>"$RESULTS"
    summary=$(echo "$result" | python3 -c 'import json, sys
r = json.load(sys.stdin)
print("ok %d/%d, max open %d, errors %d %s" % (r["ok"], r["streams"], r["max_open"], r["errors"], r["error_kinds"]))')
    echo "   hold $target: $summary; idle RSS $idle KiB, peak $hwm KiB" >&2
    stop_relay
  done
  stop_cluster
fi

python3 "$ROOT/bench/bench_report.py" "$RESULTS" --clk-tck "$CLK_TCK" --hold "$HOLD" \
  --machine "$(nproc) cores, $CPU_MODEL, load average at start $LOADAVG, at end $(cut -d' ' -f1-3 /proc/loadavg)" \
  --command "$REPRO" --settings "mocks: 2 prefillers + 2 decoders, --prefill-delay-ms $PREFILL_DELAY_MS --token-interval-ms $TOKEN_INTERVAL_MS, T=$T; ${DURATION}s per measurement; relay pinned to CPU 1, load generator and mocks to CPU 0 (pin=$PIN); priority: $PRIORITY"
log "raw measurements: $RESULTS"
