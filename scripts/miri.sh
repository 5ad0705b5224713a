#!/usr/bin/env bash
# The kernel tests under Miri, which interprets every operation and stops at
# undefined behaviour: out-of-bounds or misaligned accesses, reads of
# uninitialized memory, aliasing violations, data races, integer overflow.
# Each instruction set is a separate build whose detected features Miri
# reports from `-C target-feature`: `generic` (x86-64's baseline: the portable
# paths), `avx2` (AVX2 + FMA: the 6 x 16 kernels, the AVX2 transforms), or
# `avx512` (as far as Miri implements AVX-512F's intrinsics).
#
#   scripts/miri.sh [generic] [avx2] [avx512]     (default: generic avx2)
#
# Needs the nightly toolchain; installs its miri and rust-src components.
# The tests run a few random geometries under Miri (`tests/common` `cases`)
# and skip the hand-picked ones above `MIRI_MAX_MACS`. Flags:
# - `-Zmiri-tree-borrows`: rayon's crossbeam-epoch breaks Stacked Borrows'
#   rules in its own intrusive list, outside this crate
#   (crossbeam-rs/crossbeam#545); crossbeam's own Miri runs use Tree Borrows,
#   which accepts it (crossbeam-rs/crossbeam#996);
# - `-Zmiri-ignore-leaks`: rayon's global pool threads are never joined.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup +nightly component add miri rust-src >/dev/null
export MIRIFLAGS="${MIRIFLAGS:--Zmiri-tree-borrows -Zmiri-ignore-leaks}"
isas=("$@")
[ ${#isas[@]} -eq 0 ] && isas=(generic avx2)
for isa in "${isas[@]}"; do
  case $isa in
    generic) feats="" ;;
    avx2) feats="+avx2,+fma" ;;
    avx512) feats="+avx2,+fma,+avx512f" ;;
    *) echo "unknown instruction set: $isa (generic, avx2 or avx512)" >&2; exit 2 ;;
  esac
  echo "== Miri, $isa"
  RUSTFLAGS="-C target-feature=$feats" CARGO_TARGET_DIR="target/miri-$isa" \
    cargo +nightly miri test --lib --test against_reference --test winograd --test errors
done
