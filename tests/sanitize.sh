#!/usr/bin/env bash
# The whole test suite (Catch2 unit tests and the end-to-end suite, through CTest) on a build with
# sanitizers. Every target (libraries, glm-proxy, mock-vllm, the tests) is instrumented (g++ 12):
#
#   bash tests/sanitize.sh address   # ASan + UBSan (+ LSan at exit), build-asan/
#   bash tests/sanitize.sh thread    # TSan, glm-proxy started with --workers 2, build-tsan/
#
# The first report aborts the process with exit code 86 (tests/CMakeLists.txt sets the
# *SAN_OPTIONS); the e2e harness fails the test whose glm-proxy or mock-vllm logged a report.
# Extra arguments go to ctest, e.g. `bash tests/sanitize.sh thread -R e2e_test_core`.
# GLM_PROXY_EXTRA_ARGS overrides the extra glm-proxy flags ("--workers 2" under TSan).
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-}"
shift || true
case "${mode}" in
  address) sanitize=address,undefined dir=build-asan extra_args="" ;;
  thread) sanitize=thread dir=build-tsan extra_args="--workers 2" ;;
  *) echo "usage: tests/sanitize.sh address|thread [ctest arguments]" >&2; exit 2 ;;
esac
bash .ci/install-deps.sh
# -O1 -g1 (line tables: stack traces keep file:line) compiles the Asio/Beast files in half the
# time of RelWithDebInfo's -O2 -g, and the sanitizers' own guidance is -O1 anyway.
cmake -S . -B "${dir}" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGLM_SANITIZE="${sanitize}" \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG"
cmake --build "${dir}" -j"$(nproc)"
GLM_PROXY_EXTRA_ARGS="${GLM_PROXY_EXTRA_ARGS-${extra_args}}" \
  ctest --test-dir "${dir}" --output-on-failure -j2 "$@"
