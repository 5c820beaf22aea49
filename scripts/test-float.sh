#!/usr/bin/env bash
# The tests that compare floats (golden fixtures, bit-for-bit training, resume, finite
# differences), once under each of libtorch's x86-64 CPU code paths that this CPU has:
# `default` (portable), `avx2`, `avx512` (ATEN_CPU_CAPABILITY picks one; asking for a path the
# CPU lacks crashes libtorch with an illegal instruction, so the CPU's flags decide). A path this
# CPU lacks is named as skipped, in the output and in the last line, so that a CI log says what
# it did not cover. `make test-float` runs this; see CONTRIBUTING.md ("Tests that compare
# floats") for the list of tests and their bounds.
#
# One workspace command per path (the build `make test` made serves it; `-p` would rebuild the
# dependencies with other features), its name filters applied to every test binary.
set -uo pipefail
cd "$(dirname "$0")/.."
CARGO=${CARGO:-cargo}
# Name filters (substrings of a test's path): the golden and bit-for-bit tests by name, the
# modules whose tests compare floats by path, and the unit tests that compare a closed form.
FILTERS=(libtorch pytorch matches_torchattacks matches_auto_attack bit_for_bit resumed
         finite_difference run_killed tap_offsets adversarial_methods_need tf32 config::cost
         cpu_time_when_read frontier
         it::minnorm:: it::linear:: it::eval::minimum_norm it::torchscript:: it::regularizer::
         it::robust::probe it::checkpoint::
         loss::tests losses::tests cw::tests ead::tests fab::tests threat::tests noise::tests
         square::tests inner::tests regularizer::tests traces:: indicators:: binarize::)

# The flags each path needs, as libtorch's own dispatch checks them.
declare -A NEEDS=(
  [default]=""
  [avx2]="avx2 fma"
  [avx512]="avx512f avx512bw avx512vl avx512dq fma"
)
flags=" $(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | cut -d: -f2) "

ran=() skipped=() failed=()
for path in default avx2 avx512; do
  missing=()
  for f in ${NEEDS[$path]}; do
    [[ $flags == *" $f "* ]] || missing+=("$f")
  done
  if ((${#missing[@]})); then
    echo "test-float: $path: skipped, this CPU lacks ${missing[*]}"
    skipped+=("$path")
    continue
  fi
  echo "test-float: $path: ATEN_CPU_CAPABILITY=$path cargo test --workspace --lib --tests -- ${FILTERS[*]}"
  if ATEN_CPU_CAPABILITY=$path "$CARGO" test --workspace --lib --tests -- "${FILTERS[@]}"; then
    ran+=("$path")
  else
    failed+=("$path")
  fi
done
echo "test-float: passed on [${ran[*]}], failed on [${failed[*]}], skipped (not on this CPU): [${skipped[*]}]"
((${#failed[@]} == 0))
