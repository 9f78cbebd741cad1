#!/usr/bin/env bash
# Installs the Debian packages glm-proxy needs to build, test and demo. Idempotent: packages that are
# already present are skipped, so a second run costs one dpkg query and no network.
#
#   bash .ci/install-deps.sh          # build, test, demo (tests/run.sh, tests/sanitize.sh)
#   bash .ci/install-deps.sh fuzz     # also clang 14 and its libFuzzer runtime (tests/fuzz/run.sh)
set -euo pipefail
# libxxhash-dev: XXH3 for cache-aware routing's prefix hashes (protocol/prefix_hasher.cpp).
# prometheus: only for promtool, which tests/e2e/test_metrics.py runs on GET /metrics.
pkgs=(build-essential cmake g++ libboost1.81-dev libsimdjson-dev libspdlog-dev prometheus-cpp-dev
  libcli11-dev libxxhash-dev catch2 python3 curl systemd python3-yaml prometheus)
for group in "$@"; do
  case "${group}" in
    # libclang-rt-14-dev: libFuzzer and clang's ASan/UBSan runtimes; pkg-config: simdjson's flags.
    fuzz) pkgs+=(clang libclang-rt-14-dev pkg-config) ;;
    *) echo "install-deps.sh: unknown group '${group}' (known: fuzz)" >&2; exit 2 ;;
  esac
done
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: ${missing[*]}"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Node and the OpenAI SDK, for tests/e2e/test_clients.py (Debian 12's nodejs is 18; any node >= 18
# already on the PATH is kept).
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: nodejs npm"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends nodejs npm
fi
# npm ci only when the lockfile changed since the last install (its hash is kept in node_modules).
clients="$(cd "$(dirname "$0")/.." && pwd)/tests/clients"
stamp="$clients/node_modules/.package-lock.sha256"
want="$(sha256sum "$clients/package-lock.json" | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] ||
  [ ! -f "$clients/node_modules/openai/package.json" ]; then
  npm ci --prefix "$clients" --no-audit --no-fund
  echo "$want" >"$stamp"
fi
