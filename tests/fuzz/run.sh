#!/usr/bin/env bash
# Builds the protocol/ libFuzzer targets with clang in build-fuzz/ and runs each for a bounded
# time. Not part of the CMake build (libFuzzer needs clang; the project builds with g++).
#
#   tests/fuzz/run.sh                          # every target, 20 s each
#   FUZZ_TIME=300 tests/fuzz/run.sh fuzz_sse_framer
#   tests/fuzz/run.sh --ci                     # CI (.ci/run): installs clang, 45 s per target
#
# Needs clang and libclang-rt-14-dev (Debian; `bash .ci/install-deps.sh fuzz` installs them, and
# --ci runs it). New inputs libFuzzer finds go to build-fuzz/corpus/<target>/; the seeds in
# tests/fuzz/corpus/<target>/ are only read. A crash, a leak, a timeout (-timeout, 10 s for one
# input) or an out-of-memory saves the input as build-fuzz/<target>-{crash,leak,timeout,oom}-*
# and makes the script exit 1 after the other targets ran; the whole log is build-fuzz/<target>.log.
# Reproduce with: build-fuzz/<target> build-fuzz/<target>-crash-<sha1>
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
out="${root}/build-fuzz"
ci=0
if [[ "${1:-}" == "--ci" ]]; then
  ci=1
  shift
  bash "${root}/.ci/install-deps.sh" fuzz
fi
time_per_target="${FUZZ_TIME:-$([[ ${ci} == 1 ]] && echo 45 || echo 20)}"
cxx="${CXX_FUZZ:-clang++}"
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(fuzz_request_splicer fuzz_sse_framer fuzz_response_rewriter fuzz_sse_rewrite
  fuzz_layerwise)

flags=(-std=c++20 -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined
       -fno-sanitize-recover=all -I"${root}" $(pkg-config --cflags simdjson))
libs=($(pkg-config --libs simdjson))

mkdir -p "${out}/obj"
objects=()
for src in json_scan json_error request_splicer recompute_splicer response_rewriter sse_rewrite \
           choice_text_scanner \
           metaserver_callback layerwise_splicer layerwise_request_ids; do
  obj="${out}/obj/${src}.o"
  if [[ ! -f "${obj}" || "${root}/protocol/${src}.cpp" -nt "${obj}" ||
        -n "$(find "${root}/protocol" -name '*.hpp' -newer "${obj}")" ]]; then
    # -fsanitize=fuzzer-no-link: coverage for the library without a second main().
    "${cxx}" "${flags[@]/-fsanitize=fuzzer,address,undefined/-fsanitize=fuzzer-no-link,address,undefined}" \
      -c "${root}/protocol/${src}.cpp" -o "${obj}"
  fi
  objects+=("${obj}")
done

# UBSan findings must stop the fuzzer (a report that goes on is not a crash to libFuzzer).
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:abort_on_error=1:print_stacktrace=1}"
failed=()
for t in "${targets[@]}"; do
  echo "=== ${t}: build"
  "${cxx}" "${flags[@]}" "${root}/tests/fuzz/${t}.cpp" "${objects[@]}" "${libs[@]}" -o "${out}/${t}"
  mkdir -p "${out}/corpus/${t}"
  echo "=== ${t}: run ${time_per_target} s"
  if (cd "${out}" && "./${t}" -max_total_time="${time_per_target}" -print_final_stats=1 \
        -timeout=10 -rss_limit_mb=2048 -artifact_prefix="${out}/${t}-" \
        "corpus/${t}" "${root}/tests/fuzz/corpus/${t}" >"${out}/${t}.log" 2>&1); then
    grep -E "INITED|^Done|^stat::(number_of_executed_units|new_units_added|peak_rss_mb)" "${out}/${t}.log"
  else
    # The report (sanitizer stack, deadly signal, timeout or OOM, then the input) follows the
    # progress lines: print it from its first line.
    report="$(awk '/ERROR: |runtime error: |deadly signal|ALARM: working on the last Unit|out-of-memory/ {p = 1} p' \
      "${out}/${t}.log" | head -n 150)"
    if [[ -n "${report}" ]]; then echo "${report}"; else tail -n 80 "${out}/${t}.log"; fi
    echo "=== ${t}: FAILED; the input is in ${out}/${t}-crash-* (or -leak-, -timeout-, -oom-)"
    failed+=("${t}")
  fi
done
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "=== fuzzing FAILED: ${failed[*]}"
  exit 1
fi
echo "=== fuzzing: ${#targets[@]} target(s), ${time_per_target} s each, no failure"
