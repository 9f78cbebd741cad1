# Shell helpers the bench scripts share; sourced, never run.

# The port a process logged it listens on ("listening on HOST:PORT"), waiting up to 10 s; prints
# the process's log and fails if it exits or never says so.
wait_listening() {  # LOG PID -> port
  local i
  for i in $(seq 200); do
    if grep -q "listening on" "$1" 2>/dev/null; then
      grep -m1 -o 'listening on [^ ]*:[0-9]*' "$1" | sed 's/.*://'
      return 0
    fi
    kill -0 "$2" 2>/dev/null || break
    sleep 0.05
  done
  echo "process $2 did not start:" >&2
  cat "$1" >&2
  return 1
}

# A free TCP port on 127.0.0.1 (the kernel's pick; free when printed).
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Exits unless every argument is an executable file.
require_executables() {
  local b
  for b in "$@"; do
    [ -x "$b" ] || { echo "missing $b (build glm-proxy, mock-vllm, glm-loadgen)" >&2; exit 1; }
  done
}

# Sets the array decode_shape to mock-vllm's flags for a stream shape: burst (a whole stream in
# one write) or paced (a token every PACED_MS).
set_decode_shape() {  # SHAPE PACED_MS
  case $1 in
    burst) decode_shape=(--burst --token-interval-ms 0) ;;
    paced) decode_shape=(--token-interval-ms "$2") ;;
    *) echo "--shape burst or paced" >&2; exit 2 ;;
  esac
}
