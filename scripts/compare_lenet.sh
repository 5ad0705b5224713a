#!/usr/bin/env bash
# Side-by-side LeNet training-step speed: ferroconv, then PyTorch, alternating,
# ROUNDS times per thread count, so both see the same machine state.
# Needs: pip install torch numpy. Usage: scripts/compare_lenet.sh [ROUNDS=3] [SHARED=../shared]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
shared=${2:-../shared}
cargo build -q --release --example lenet_step
for t in 1 2; do
  for r in $(seq "$rounds"); do
    ./target/release/examples/lenet_step --threads "$t"
    python3 "$shared/compare/torch_lenet.py" "$t" 1 | tail -1 | sed "s/^/torch threads $t /"
  done
done
