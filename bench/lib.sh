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
