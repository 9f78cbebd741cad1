#!/usr/bin/env bash
# Installs what is missing, builds glm-proxy and the mock vLLM server, and runs every test
# (Catch2 unit tests and the end-to-end suite) through CTest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build -j"$(nproc)"
ctest --test-dir build --output-on-failure -j2
