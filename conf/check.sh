#!/usr/bin/env bash
# Checks the deployment files in conf/. Exits 0 when everything checked passes, 1 otherwise.
#   bash conf/check.sh                     # from anywhere
#   GLM_PROXY_BIN=build/glm-proxy bash conf/check.sh
#
#  1. systemd: `systemd-analyze verify` on copies of glm-proxy.service and glm-proxy@.service whose
#     ExecStart points at a stub in a temporary directory (so nothing is written outside it); any
#     warning is a failure. `systemd-analyze security --offline` must rate each unit's exposure at
#     2.0 or lower.
#  2. TOML (conf/*.toml and the ConfigMap in k8s/deployment.yaml): parsed with python3's tomllib;
#     every key must be a glm-proxy flag spelled with dashes (glm-proxy refuses any other key),
#     values of the right type, host/port lists of equal length, every array on one line
#     (glm-proxy's reader takes no multi-line arrays). With a binary, the list of flags here must
#     match its --help.
#  3. When a glm-proxy binary that knows --config is found ($GLM_PROXY_BIN, build/glm-proxy, the
#     newest build*/glm-proxy, or PATH), each TOML is also loaded by it: it must start, report the expected numbers of
#     instances on GET /healthcheck and log the expected settings, then exit 0 on SIGTERM.
#  4. Kubernetes YAML (needs PyYAML, else skipped): structure, probes on /healthcheck, the
#     prometheus.io annotations, grace periods longer than preStop + drain-timeout.
#  5. Grafana JSON: parses, unique panel ids, every metric is in README.md's Metrics table and
#     every metric family of that table is in a panel, and every query is valid PromQL
#     (`promtool check rules`, when promtool is installed).
#  6. Dockerfile: the runtime packages exist (apt-cache) and cover the shared libraries the
#     glm-proxy binary links (when a binary is found).
set -uo pipefail

conf_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_dir="$(dirname "$conf_dir")"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
failures=0
ok() { echo "ok:   $*"; }
skip() { echo "SKIP: $*"; }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# ---- 1. systemd unit ---------------------------------------------------------------------------
if ! command -v systemd-analyze >/dev/null 2>&1; then
  skip "systemd-analyze not installed (apt-get install systemd); the units are not verified"
else
  mkdir -p "$tmp/unit/bin"
  printf '#!/bin/sh\nexit 0\n' >"$tmp/unit/bin/glm-proxy"
  chmod 755 "$tmp/unit/bin/glm-proxy"
  for unit_name in glm-proxy.service glm-proxy@.service; do
    unit="$conf_dir/$unit_name"
    # The template's instance (blue, green) only names the process; both run the same config.
    want='/usr/local/bin/glm-proxy --config /etc/glm-proxy/glm-proxy.toml'
    [ "$unit_name" = glm-proxy.service ] || want="$want --reuse-port"
    grep -qx "ExecStart=$want" "$unit" \
      || fail "$unit_name: ExecStart is not '$want'"
    grep -qx 'ExecReload=/bin/kill -HUP $MAINPID' "$unit" \
      || fail "$unit_name: no 'ExecReload=/bin/kill -HUP \$MAINPID' (systemctl reload)"
    copy="$unit_name"
    [ "$unit_name" = glm-proxy.service ] || copy=glm-proxy@blue.service
    sed "s#^ExecStart=/usr/local/bin/glm-proxy#ExecStart=$tmp/unit/bin/glm-proxy#" "$unit" \
      >"$tmp/unit/$unit_name"
    # verify exits 0 on unknown keys and bad values, printing a warning: any output is a failure.
    out="$(cd "$tmp/unit" && systemd-analyze verify "./$copy" 2>&1)"
    rc=$?
    if [ $rc -ne 0 ] || [ -n "$out" ]; then
      fail "systemd-analyze verify $copy (rc=$rc):"
      printf '      %s\n' "$out"
    else
      ok "systemd-analyze verify $copy: no errors, no warnings"
    fi
    sec="$(cd "$tmp/unit" && systemd-analyze security --offline=true --threshold=20 "./$copy" 2>&1)"
    rc=$?
    level="$(printf '%s\n' "$sec" | grep -o 'Overall exposure level.*' | tail -1)"
    if [ $rc -ne 0 ]; then
      fail "systemd-analyze security $copy: ${level:-rc=$rc}"
      printf '%s\n' "$sec" | grep -v '^✓' | sed 's/^/      /' | head -30
    else
      ok "systemd-analyze security $copy: $level"
    fi
  done
fi

# ---- 2-6. everything else, in Python -----------------------------------------------------------
if ! command -v python3 >/dev/null 2>&1; then
  fail "python3 not found: TOML, YAML, JSON and Dockerfile checks not run"
  echo "check.sh: $failures failure(s)"
  exit 1
fi
GLM_PROXY_BIN="${GLM_PROXY_BIN:-}" python3 - "$conf_dir" "$repo_dir" "$tmp" <<'PY'
import json, os, re, shutil, signal, socket, subprocess, sys, time, urllib.request

conf_dir, repo_dir, tmp = sys.argv[1:4]
failures = 0


def ok(msg): print(f"ok:   {msg}")
def skip(msg): print(f"SKIP: {msg}")
def note(msg): print(f"note: {msg}")
def fail(msg):
    global failures
    failures += 1
    print(f"FAIL: {msg}")


try:
    import tomllib
except ImportError:
    try:
        import tomli as tomllib
    except ImportError:
        tomllib = None

# glm-proxy's long flags and the type of their value in a TOML file (checked against --help below
# when a binary is found).
FLAGS = {
    "host": str, "port": int, "prefiller-hosts": [str], "prefiller-ports": [int],
    "decoder-hosts": [str], "decoder-ports": [int], "prefill": [str], "decode": [str],
    "max-retries": int, "retry-delay": (int, float), "max-waiting-retries": int,
    "waiting-retry-interval": (int, float), "workers": int, "log-level": str, "log-format": str,
    "connect-timeout": (int, float), "prefill-timeout": (int, float),
    "stream-idle-timeout": (int, float), "client-write-timeout": (int, float),
    "header-timeout": (int, float), "drain-timeout": (int, float), "max-body-bytes": int,
    "max-connections": int, "max-inflight": int, "queue-timeout": (int, float),
    "eject-after": int, "eject-seconds": (int, float), "api-key": str, "admin-token": str,
    "reuse-port": bool, "prefill-policy": str, "decode-policy": str,
    "cache-threshold": (int, float), "cache-balance-abs-threshold": (int, float),
    "cache-balance-rel-threshold": (int, float), "cache-max-entries": int,
    "hash-balance-factor": (int, float), "max-prefill-answer-bytes": int,
    "scrape-interval": (int, float), "kv-high": (int, float), "max-metrics-bytes": int,
    "prefill-fallback": str,
    "pd-mode": str, "metaserver-url": str, "metaserver-timeout": (int, float),
}
POSITIVE = {"connect-timeout", "prefill-timeout", "stream-idle-timeout", "client-write-timeout",
            "header-timeout", "max-body-bytes"}
DEFAULT_DRAIN = 30.0
ADDR = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[^\s:\[\]]+):(\d{1,5})$")


def check_toml_text(name, text):
    """Validates one glm-proxy TOML; returns (settings, expected prefillers, decoders) or None."""
    if tomllib is None:
        fail(f"{name}: neither tomllib (python >= 3.11) nor tomli available")
        return None
    try:
        data = tomllib.loads(text)
    except Exception as e:
        fail(f"{name}: not valid TOML: {e}")
        return None
    errors = []
    # CLI11 2.1's reader: one key = value per line, arrays closed on the line they open on.
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if s.startswith("["):
            errors.append(f"line {n}: tables are not read by glm-proxy")
            continue
        if "=" not in s:
            errors.append(f"line {n}: not 'key = value'")
            continue
        value = s.split("=", 1)[1].split("#", 1)[0].strip()
        if value.startswith("[") and not value.endswith("]"):
            errors.append(f"line {n}: array must open and close on one line")
    for key, value in data.items():
        if key not in FLAGS:
            hint = " (spell it with dashes)" if key.replace("_", "-") in FLAGS else ""
            errors.append(f"unknown key '{key}'{hint}; glm-proxy would refuse to start")
            continue
        want = FLAGS[key]
        if isinstance(want, list):
            if not isinstance(value, list) or not all(
                    isinstance(v, want[0]) and not isinstance(v, bool) for v in value):
                errors.append(f"{key}: want an array of {want[0].__name__}")
        elif want is bool:
            if not isinstance(value, bool):
                errors.append(f"{key}: want true or false")
        elif isinstance(value, bool) or not isinstance(value, want):
            errors.append(f"{key}: wrong type {type(value).__name__}")
    if errors:
        for e in errors:
            fail(f"{name}: {e}")
        return None
    g = lambda k, d=None: data.get(k, d)
    if not 0 <= g("port", 8000) <= 65535:
        errors.append("port out of range")
    for k in POSITIVE:
        if k in data and data[k] <= 0:
            errors.append(f"{k} must be positive")
    if g("drain-timeout", 0) < 0:
        errors.append("drain-timeout must not be negative")
    if not 1 <= g("workers", 1) <= 256:
        errors.append("workers must be 1..256")
    if g("log-level", "INFO").upper() not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        errors.append("log-level must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
    lists = {}
    for role, default_host, default_port in (("prefiller", "localhost", 8001), ("decoder", "localhost", 8002)):
        hosts, ports = g(f"{role}-hosts"), g(f"{role}-ports")
        flat = "prefill" if role == "prefiller" else "decode"
        explicit = hosts is not None or ports is not None
        if not explicit and flat in data:
            hosts, ports = [], []
        hosts = [default_host] if hosts is None else hosts
        ports = [default_port] if ports is None else ports
        if len(hosts) != len(ports):
            errors.append(f"{role}-hosts has {len(hosts)} entries, {role}-ports {len(ports)}")
        if any(not 1 <= p <= 65535 for p in ports):
            errors.append(f"{role}-ports: port out of range")
        addrs = [(h[1:-1] if h.startswith("[") and h.endswith("]") else h, p) for h, p in zip(hosts, ports)]
        for text_addr in g(flat, []):
            m = ADDR.match(text_addr)
            if not m or not 1 <= int(m.group(2)) <= 65535:
                errors.append(f"{flat}: '{text_addr}' is not HOST:PORT ([ADDR]:PORT for IPv6)")
                continue
            addrs.append((m.group(1).strip("[]"), int(m.group(2))))
        if not addrs:
            errors.append(f"no {role} instance")
        lists[role] = addrs
    if errors:
        for e in errors:
            fail(f"{name}: {e}")
        return None
    ok(f"{name}: valid ({len(lists['prefiller'])} prefill, {len(lists['decoder'])} decode instances)")
    return data, lists["prefiller"], lists["decoder"]


# ---- find a glm-proxy binary that knows --config --------------------------------------------------
def find_binary():
    import glob
    builds = sorted(glob.glob(os.path.join(repo_dir, "build*", "glm-proxy")), key=os.path.getmtime, reverse=True)
    cands = [os.environ.get("GLM_PROXY_BIN") or None, os.path.join(repo_dir, "build", "glm-proxy"),
             *builds, shutil.which("glm-proxy")]
    for c in cands:
        if not c or not os.access(c, os.X_OK):
            continue
        try:
            out = subprocess.run([c, "--help"], capture_output=True, text=True, timeout=10).stdout
        except Exception:
            continue
        if "--config" in out:
            return c
    return None


binary = find_binary()
metrics_text = None

if binary:
    helped = set(re.findall(r"^  (?:-h,)?--([a-z][a-z-]*)", subprocess.run(
        [binary, "--help"], capture_output=True, text=True, timeout=10).stdout, re.M))
    helped -= {"help", "version", "config"}
    if helped != set(FLAGS):
        fail(f"check.sh's FLAGS differ from {binary} --help: missing {sorted(helped - set(FLAGS))}, "
             f"extra {sorted(set(FLAGS) - helped)}")
    else:
        ok(f"check.sh knows every flag of {binary} --help ({len(FLAGS)})")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fmt_num(v):
    return f"{float(v):g}"


def live_check(name, path, data, prefillers, decoders):
    """Runs the binary on the file; compares /healthcheck and the logged configuration."""
    global metrics_text
    port = free_port()
    log_path = os.path.join(tmp, os.path.basename(name) + ".log")
    with open(log_path, "w") as log:
        proc = subprocess.Popen([binary, "--config", path, "--host", "127.0.0.1", "--port", str(port)],
                                stdout=log, stderr=subprocess.STDOUT, env={"PATH": os.environ.get("PATH", "")})
    try:
        health = None
        deadline = time.time() + 10
        while time.time() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthcheck", timeout=2) as r:
                    health = json.loads(r.read())
                break
            except Exception:
                time.sleep(0.1)
        if health is None:
            fail(f"{name}: {binary} did not serve /healthcheck (exit {proc.poll()}): "
                 + open(log_path).read()[-400:].replace("\n", " | "))
            return
        if metrics_text is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    metrics_text = r.read().decode()
            except Exception:
                pass
        got = (health.get("prefill_instances"), health.get("decode_instances"))
        if got != (len(prefillers), len(decoders)):
            fail(f"{name}: glm-proxy serves {got[0]} prefill / {got[1]} decode instances, "
                 f"the file lists {len(prefillers)} / {len(decoders)}")
            return
        log_text = open(log_path).read()
        m = re.search(r"configuration: (.*)", log_text)
        mismatches = []
        if m:
            logged = dict(kv.split("=", 1) for kv in re.findall(r"(\w+=\[[^\]]*\]|\w+=\S+)", m.group(1)))
            def addr_list(addrs):
                return "[" + " ".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in addrs) + "]"
            expect = {"prefillers": addr_list(prefillers), "decoders": addr_list(decoders)}
            for key, value in data.items():
                k = key.replace("-", "_")
                if k in logged and key not in {"host", "port"}:
                    expect[k] = value.upper() if key == "log-level" else value
            for k, v in expect.items():
                if k not in logged:
                    continue
                a, b = logged[k], v
                if isinstance(b, (int, float)) and not isinstance(b, bool):
                    same = fmt_num(a) == fmt_num(b)
                else:
                    same = a == str(b)
                if not same:
                    mismatches.append(f"{k}: logged {a}, file {b}")
        if mismatches:
            fail(f"{name}: glm-proxy's effective configuration differs: " + "; ".join(mismatches))
            return
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=float(data.get("drain-timeout", DEFAULT_DRAIN)) + 10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    if proc.returncode != 0:
        fail(f"{name}: glm-proxy exited {proc.returncode} after SIGTERM, want 0")
        return
    ok(f"{name}: loaded by {binary}: {got[0]} prefill / {got[1]} decode instances, settings as "
       f"written{'' if m else ' (no configuration log line to compare)'}, exit 0 on SIGTERM")


def check_toml(name, text, path=None):
    res = check_toml_text(name, text)
    if res and binary:
        if path is None:
            path = os.path.join(tmp, re.sub(r"\W", "_", name) + ".toml")
            with open(path, "w") as f:
                f.write(text)
        live_check(name, path, *res)
    return res


# ---- 2/3. TOML files ------------------------------------------------------------------------------
if not binary:
    skip("no glm-proxy binary with --config (set GLM_PROXY_BIN or build it): TOML files not loaded by glm-proxy")
tomls = sorted(f for f in os.listdir(conf_dir) if f.endswith(".toml"))
if not tomls:
    fail("no conf/*.toml")
drains = {}
for f in tomls:
    p = os.path.join(conf_dir, f)
    res = check_toml(f, open(p).read(), p)
    if res:
        drains[f] = float(res[0].get("drain-timeout", DEFAULT_DRAIN))

unit_text = open(os.path.join(conf_dir, "glm-proxy.service")).read()
m = re.search(r"^TimeoutStopSec=(\d+)", unit_text, re.M)
stop = float(m.group(1)) if m else 90.0
too_long = [f for f, d in drains.items() if d >= stop]
if too_long:
    fail(f"drain-timeout >= TimeoutStopSec ({stop:g}) in {', '.join(too_long)}: systemd would SIGKILL mid-drain")
else:
    ok(f"every TOML's drain-timeout is below the unit's TimeoutStopSec ({stop:g} s)")

# ---- 4. Kubernetes ---------------------------------------------------------------------------------
try:
    import yaml
except ImportError:
    yaml = None


def arg_value(args, flag, default=None):
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return default


def prestop_sleep(c):
    cmd = (((c.get("lifecycle") or {}).get("preStop") or {}).get("exec") or {}).get("command") or []
    if len(cmd) == 2 and cmd[0] == "sleep":
        return float(cmd[1])
    s = ((c.get("lifecycle") or {}).get("preStop") or {}).get("sleep")
    return float(s["seconds"]) if s else 0.0


def check_pod_spec(name, meta, spec, configmaps):
    errs = []
    ann = meta.get("annotations") or {}
    containers = spec.get("containers") or []
    proxy = [c for c in containers if "glm-proxy" in c.get("image", "") or c.get("name") == "glm-proxy"]
    if len(proxy) != 1:
        return [f"want exactly one glm-proxy container, found {len(proxy)}"]
    c = proxy[0]
    args = [str(a) for a in (c.get("args") or [])]
    for c2 in containers:
        if not c2.get("name") or not c2.get("image"):
            errs.append("a container without name or image")
    ports = {p.get("name"): p.get("containerPort") for p in c.get("ports") or []}
    drain = DEFAULT_DRAIN
    listen = arg_value(args, "--port")
    cfg_path = arg_value(args, "--config")
    if cfg_path:
        mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts") or []}
        found = False
        for v in spec.get("volumes") or []:
            cm = v.get("configMap")
            if cm and v["name"] in mounts:
                for key, text in (configmaps.get(cm["name"]) or {}).items():
                    if os.path.join(mounts[v["name"]], key) == cfg_path:
                        found = True
                        data = tomllib.loads(text) if tomllib else {}
                        drain = float(data.get("drain-timeout", drain))
                        listen = listen or str(data.get("port", "")) or None
        if not found:
            errs.append(f"--config {cfg_path} is not a mounted ConfigMap key")
    drain = float(arg_value(args, "--drain-timeout", drain))
    listen = int(listen or 8000)
    if listen not in ports.values():
        errs.append(f"glm-proxy listens on {listen} but no containerPort says so")
    for probe in ("readinessProbe", "livenessProbe"):
        get = (c.get(probe) or {}).get("httpGet") or {}
        port = get.get("port")
        port = ports.get(port, port)
        if get.get("path") != "/healthcheck" or port != listen:
            errs.append(f"{probe} is not GET /healthcheck on port {listen}")
    if ann.get("prometheus.io/scrape") != "true" or ann.get("prometheus.io/path") != "/metrics" \
            or str(ann.get("prometheus.io/port")) != str(listen):
        errs.append("prometheus.io/scrape, /port, /path annotations missing or not matching the listen port")
    res = c.get("resources") or {}
    if not res.get("requests") or not res.get("limits"):
        errs.append("glm-proxy container without resource requests and limits")
    grace = float(spec.get("terminationGracePeriodSeconds", 30))
    need = prestop_sleep(c) + drain
    if grace <= need:
        errs.append(f"terminationGracePeriodSeconds {grace:g} <= preStop {prestop_sleep(c):g} + drain-timeout {drain:g}")
    for other in containers:
        if other is not c and prestop_sleep(other) and prestop_sleep(other) < need:
            errs.append(f"container {other['name']} stops before glm-proxy has drained ({prestop_sleep(other):g} < {need:g} s)")
    if not errs:
        ok(f"{name}: probes, annotations, resources, ports, grace period {grace:g} s > "
           f"preStop + drain {need:g} s")
    return errs


if yaml is None:
    skip("PyYAML not available: k8s/*.yaml not checked")
else:
    kdir = os.path.join(conf_dir, "k8s")
    for f in sorted(os.listdir(kdir)) if os.path.isdir(kdir) else []:
        if not f.endswith((".yaml", ".yml")):
            continue
        name = f"k8s/{f}"
        try:
            docs = [d for d in yaml.safe_load_all(open(os.path.join(kdir, f))) if d]
        except Exception as e:
            fail(f"{name}: not valid YAML: {e}")
            continue
        errs = []
        configmaps = {}
        for d in docs:
            if not all(d.get(k) for k in ("apiVersion", "kind")) or not (d.get("metadata") or {}).get("name"):
                errs.append("a document without apiVersion, kind or metadata.name")
                continue
            if d["kind"] == "ConfigMap":
                configmaps[d["metadata"]["name"]] = d.get("data") or {}
                for key, text in (d.get("data") or {}).items():
                    if key.endswith(".toml") and not check_toml(f"{name} ConfigMap {d['metadata']['name']}/{key}", text):
                        errs.append(f"ConfigMap key {key} is not a valid glm-proxy TOML")
        for d in docs:
            kind = d.get("kind")
            if kind == "Deployment":
                tpl = d["spec"]["template"]
                sel = d["spec"].get("selector", {}).get("matchLabels", {})
                labels = tpl.get("metadata", {}).get("labels", {})
                if any(labels.get(k) != v for k, v in sel.items()):
                    errs.append("Deployment selector does not match the pod template labels")
                errs += check_pod_spec(f"{name} Deployment {d['metadata']['name']}", tpl.get("metadata", {}), tpl["spec"], configmaps)
            elif kind == "Pod":
                errs += check_pod_spec(f"{name} Pod {d['metadata']['name']}", d["metadata"], d["spec"], configmaps)
            elif kind == "Service":
                pods = [x for x in docs if x.get("kind") in ("Deployment", "Pod")]
                def labels_of(x):
                    return (x["spec"]["template"]["metadata"] if x["kind"] == "Deployment" else x["metadata"]).get("labels", {})
                sel = d["spec"].get("selector") or {}
                if pods and not any(all(labels_of(p).get(k) == v for k, v in sel.items()) for p in pods):
                    errs.append(f"Service {d['metadata']['name']} selects no pod in this file")
        for e in errs:
            fail(f"{name}: {e}")
        if not errs:
            ok(f"{name}: {len(docs)} documents ({', '.join(d['kind'] for d in docs)})")

# ---- 5. Grafana --------------------------------------------------------------------------------------
readme = os.path.join(repo_dir, "README.md")
known = set(re.findall(r"^\| `(glm_proxy_\w+)` \|", open(readme).read(), re.M)) if os.path.exists(readme) else set()
gpath = os.path.join(conf_dir, "grafana-dashboard.json")
try:
    dash = json.load(open(gpath))
except Exception as e:
    fail(f"grafana-dashboard.json: not valid JSON: {e}")
    dash = None
if dash is not None:
    errs = []
    panels = []
    def walk(ps):
        for p in ps:
            panels.append(p)
            walk(p.get("panels") or [])
    walk(dash.get("panels") or [])
    ids = [p.get("id") for p in panels]
    if len(ids) != len(set(ids)) or None in ids:
        errs.append("panel ids missing or not unique")
    exprs = []
    for p in panels:
        if p.get("type") == "row":
            continue
        if not p.get("gridPos") or not p.get("targets"):
            errs.append(f"panel '{p.get('title')}' without gridPos or targets")
        for t in p.get("targets") or []:
            if not t.get("expr"):
                errs.append(f"panel '{p.get('title')}' has a target without expr")
            else:
                exprs.append((p.get("title"), t["expr"]))
    used = set()
    for title, e in exprs:
        for metric in re.findall(r"\b(glm_proxy_\w+)", e):
            used.add(re.sub(r"_(bucket|sum|count)$", "", metric) if metric.endswith(("_bucket", "_sum", "_count")) and not metric.endswith("_total") else metric)
    if known:
        unknown = sorted(used - known)
        if unknown:
            errs.append(f"metrics not in README.md's Metrics table: {', '.join(unknown)}")
        uncovered = sorted(known - used)
        if uncovered:
            errs.append(f"README.md's Metrics table lists metrics no panel shows: {', '.join(uncovered)}")
    else:
        skip("README.md not found: dashboard metric names not checked against it")
    if metrics_text:
        exposed = set(re.findall(r"^# TYPE (\S+)", metrics_text, re.M))
        missing = sorted(u for u in used if u not in exposed)
        if missing:
            note(f"no samples yet in a fresh glm-proxy's /metrics (fine): {', '.join(missing)}")
    promtool = shutil.which("promtool")
    if promtool and exprs:
        subst = lambda e: (e.replace("$__rate_interval", "5m").replace("$__interval", "1m")
                           .replace("$__range", "1h").replace("${job}", ".*").replace("$job", ".*")
                           .replace("${instance}", ".*").replace("$instance", ".*")
                           .replace("${endpoint}", ".*").replace("$endpoint", ".*"))
        rules = {"groups": [{"name": "dashboard", "rules": [
            {"record": f"dashboard:expr_{i}", "expr": subst(e)} for i, (_, e) in enumerate(exprs)]}]}
        rpath = os.path.join(tmp, "dashboard-rules.json")
        json.dump(rules, open(rpath, "w"))  # JSON is YAML: promtool reads it
        r = subprocess.run([promtool, "check", "rules", rpath], capture_output=True, text=True)
        if r.returncode != 0:
            errs.append("promtool check rules: " + (r.stdout + r.stderr).strip().replace("\n", " | "))
        else:
            ok(f"grafana-dashboard.json: {len(exprs)} queries are valid PromQL (promtool)")
    elif not promtool:
        skip("promtool not installed: dashboard PromQL not parsed")
    for e in errs:
        fail(f"grafana-dashboard.json: {e}")
    if not errs:
        ok(f"grafana-dashboard.json: {len(panels)} panels, unique ids, all {len(known)} metrics of the README's table")

# ---- 6. Dockerfile ------------------------------------------------------------------------------------
dpath = os.path.join(conf_dir, "Dockerfile")
dtext = open(dpath).read() if os.path.exists(dpath) else ""
stages = re.split(r"^FROM ", dtext, flags=re.M)
if len(stages) < 3:
    fail("Dockerfile: want a build stage and a runtime stage")
else:
    runtime = stages[-1]
    m = re.search(r"apt-get install[^\n]*\\\n((?:.*\\\n)*?.*?)(?:&&|$)", runtime)
    pkgs = set(re.findall(r"\b(lib[\w.+-]+|curl|ca-certificates)\b", m.group(1))) if m else set()
    errs = []
    for word in ("USER", "EXPOSE 8000", "HEALTHCHECK", "ENTRYPOINT"):
        if not re.search(rf"^{word}", runtime, re.M):
            errs.append(f"runtime stage lacks {word}")
    if re.search(r"^USER\s+(0|root)\b", runtime, re.M):
        errs.append("runtime stage runs as root")
    if shutil.which("apt-cache"):
        for p in sorted(pkgs):
            r = subprocess.run(["apt-cache", "show", "--no-all-versions", p], capture_output=True, text=True)
            if r.returncode != 0 or not r.stdout.strip():
                errs.append(f"runtime package {p} unknown to apt-cache")
    else:
        skip("apt-cache not available: Dockerfile package names not checked")
    if binary and shutil.which("dpkg") and shutil.which("readelf"):
        needed = re.findall(r"\(NEEDED\).*\[(.+?)\]", subprocess.run(["readelf", "-d", binary], capture_output=True, text=True).stdout)
        essential = {"libc6", "libgcc-s1", "libstdc++6"}  # in debian:12-slim already
        ldcache = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
        for lib in needed:
            m2 = re.search(rf"^\s*{re.escape(lib)} \(.*?\) => (\S+)", ldcache, re.M)
            if not m2:
                continue
            path = os.path.realpath(m2.group(1))
            owner = None
            for candidate in (path, path.replace("/usr/lib/", "/lib/", 1)):
                r = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True)
                if r.returncode == 0:
                    owner = r.stdout.split(":")[0]
                    break
            if owner and owner not in essential and owner not in pkgs:
                errs.append(f"{lib} (package {owner}) is linked but not installed in the runtime stage")
    for e in errs:
        fail(f"Dockerfile: {e}")
    if not errs:
        ok(f"Dockerfile: runtime packages {', '.join(sorted(pkgs))} exist"
           + (" and cover every library glm-proxy links" if binary else ""))

sys.exit(1 if failures else 0)
PY
[ $? -eq 0 ] || failures=$((failures + 1))

if [ $failures -eq 0 ]; then
  echo "check.sh: all checks passed"
else
  echo "check.sh: FAILED"
fi
[ $failures -eq 0 ]
