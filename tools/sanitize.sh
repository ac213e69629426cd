#!/usr/bin/env bash
# Build both compiled extensions with AddressSanitizer + UndefinedBehaviorSanitizer in a temporary
# copy of the work tree (the in-place build is left alone) and run the kernel tests, the scenarios,
# the random-dump invariants and the hostile-input corpus (if present) against them.
#
#   tools/sanitize.sh                 # the default test set
#   tools/sanitize.sh tests/test_x.py # other pytest arguments instead
#
# Python itself is not instrumented, so libasan is preloaded; leak detection is off (CPython keeps
# memory until exit by design). Any ASan or UBSan report stops the run with a non-zero status.
# Needs gcc/g++ with libasan and libubsan (Debian: build-essential). KEEP=1 keeps the copy.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/kaiwo-sanitize.XXXXXX")
if [ "${KEEP:-0}" = 1 ]; then echo "copy kept in $work"; else trap 'rm -rf "$work"' EXIT; fi

# Tracked and new (not ignored) files only: no in-place .so, build/ or generated .c of the tree.
(cd "$repo" && git ls-files -z --cached --others --exclude-standard) |
    (cd "$repo" && xargs -0 cp --parents -t "$work" 2>/dev/null || true)
rm -f "$work"/kaiwo_core/*.so "$work"/kaiwo_core/_quantity.c

cd "$work"
start=$(date +%s)
KAIWO_SANITIZE=1 python setup.py -q build_ext --inplace -j "${JOBS:-2}" >build.log 2>&1 ||
    { cat build.log; exit 1; }
built=$(date +%s)
echo "sanitizer build: $((built - start)) s"

if [ $# -eq 0 ]; then
    set -- tests/test_*kernel*.py tests/test_policies.py tests/test_scenarios.py \
        tests/test_invariants_random.py tests/test_quantity.py
    [ -f tests/test_hostile_corpus.py ] && set -- "$@" tests/test_hostile_corpus.py
fi

# libstdc++ too: ASan's __cxa_throw interceptor binds at start-up, before the extension loads
# libstdc++, and otherwise aborts on the first C++ exception (pybind11's ValueError).
export LD_PRELOAD="$(${CXX:-g++} -print-file-name=libasan.so) $(${CXX:-g++} -print-file-name=libstdc++.so)"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
# The copy's modules, never an installed kaiwo_core.
export PYTHONPATH="$work"
python -c "import kaiwo_core._core as c, kaiwo_core._quantity as q; print('sanitized modules:', c.__file__, q.__file__)"
python -m pytest -q -p no:cacheprovider "$@"
echo "tests under the sanitizers: $(($(date +%s) - built)) s"
