#!/usr/bin/env bash
# Installs the Debian packages glm-proxy needs to build, test and demo. Idempotent: packages that are
# already present are skipped, so a second run costs one dpkg query and no network.
set -euo pipefail
# prometheus: only for promtool, which tests/e2e/test_metrics.py runs on GET /metrics.
pkgs=(build-essential cmake g++ libboost1.81-dev libsimdjson-dev libspdlog-dev prometheus-cpp-dev
  libcli11-dev catch2 python3 curl systemd python3-yaml prometheus)
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
