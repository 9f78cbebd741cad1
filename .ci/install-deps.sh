#!/usr/bin/env bash
# Installs the Debian packages glm-proxy needs to build, test and demo. Idempotent: packages that are
# already present are skipped, so a second run costs one dpkg query and no network.
#
#   bash .ci/install-deps.sh          # build, test, demo (tests/run.sh, tests/sanitize.sh)
#   bash .ci/install-deps.sh fuzz     # also clang 14 and its libFuzzer runtime (tests/fuzz/run.sh)
set -euo pipefail
# prometheus: only for promtool, which tests/e2e/test_metrics.py runs on GET /metrics.
pkgs=(build-essential cmake g++ libboost1.81-dev libsimdjson-dev libspdlog-dev prometheus-cpp-dev
  libcli11-dev catch2 python3 curl systemd python3-yaml prometheus)
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
