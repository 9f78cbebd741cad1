#!/usr/bin/env bash
# Installs what is missing, builds glm-proxy and the mock vLLM server, and runs every test
# (Catch2 unit tests and the end-to-end suite) through CTest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/install-deps.sh
# CI builds with every warning an error (-DGLM_WERROR=ON); .ci/run sets GLM_WERROR=ON too.
werror=OFF
if [[ "${CI:-}" == "true" || "${GLM_WERROR:-}" == "ON" ]]; then werror=ON; fi
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGLM_WERROR="${werror}"
cmake --build build -j"$(nproc)"
ctest --test-dir build --output-on-failure -j2
