#!/usr/bin/env bash
# Builds the protocol/ libFuzzer targets with clang in build-fuzz/ and runs each for a bounded
# time. Not part of the CMake build or CI.
#
#   tests/fuzz/run.sh                 # every target, 20 s each
#   FUZZ_TIME=300 tests/fuzz/run.sh fuzz_sse_framer
#
# Needs clang and libclang-rt-14-dev (Debian). New inputs libFuzzer finds go to
# build-fuzz/corpus/<target>/; the seeds in tests/fuzz/corpus/<target>/ are only read.
# A failing input is saved as build-fuzz/<target>-crash-* and makes the script fail.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
out="${root}/build-fuzz"
time_per_target="${FUZZ_TIME:-20}"
cxx="${CXX_FUZZ:-clang++}"
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(fuzz_request_splicer fuzz_sse_framer fuzz_response_rewriter)

flags=(-std=c++20 -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined
       -fno-sanitize-recover=undefined -I"${root}" $(pkg-config --cflags simdjson))
libs=($(pkg-config --libs simdjson))

mkdir -p "${out}/obj"
objects=()
for src in json_scan request_splicer recompute_splicer response_rewriter; do
  obj="${out}/obj/${src}.o"
  if [[ ! -f "${obj}" || "${root}/protocol/${src}.cpp" -nt "${obj}" ||
        -n "$(find "${root}/protocol" -name '*.hpp' -newer "${obj}")" ]]; then
    # -fsanitize=fuzzer-no-link: coverage for the library without a second main().
    "${cxx}" "${flags[@]/-fsanitize=fuzzer,address,undefined/-fsanitize=fuzzer-no-link,address,undefined}" \
      -c "${root}/protocol/${src}.cpp" -o "${obj}"
  fi
  objects+=("${obj}")
done

status=0
for t in "${targets[@]}"; do
  echo "=== ${t}: build"
  "${cxx}" "${flags[@]}" "${root}/tests/fuzz/${t}.cpp" "${objects[@]}" "${libs[@]}" -o "${out}/${t}"
  mkdir -p "${out}/corpus/${t}"
  echo "=== ${t}: run ${time_per_target} s"
  if ! (cd "${out}" && "./${t}" -max_total_time="${time_per_target}" -print_final_stats=1 \
          -timeout=10 -rss_limit_mb=2048 -artifact_prefix="${out}/${t}-" \
          "corpus/${t}" "${root}/tests/fuzz/corpus/${t}" 2>&1 | tail -n 25); then
    echo "=== ${t}: FAILED; the input is in ${out}/${t}-crash-* (or -leak-, -timeout-)"
    status=1
  fi
done
exit "${status}"
