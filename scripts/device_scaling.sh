#!/usr/bin/env bash
# The 1-16 thread scaling run of docs/benchmarks.md, on a lent 16-core machine
# with PyTorch but no Rust: the binaries are built here and carried in .device/
#   cargo build --release --examples --tests
#   mkdir -p .device && cp target/release/examples/bench_report .device/
#   cp target/release/deps/{ferroconv,against_reference,determinism,winograd}-<hash> .device/{ferroconv,against_reference,determinism,winograd}
#   cp ../shared/compare/torch_suite.py .device/
#   cp target/release/examples/fma_peak .device/   (optional: the machine's FMA peak)
# (`cargo test --release --no-run` prints the hashed test binaries' paths.)
# The AVX2 and generic paths are tested on every CI run; only the lent machine
# has AVX-512, so its tests run there under FERROCONV_ISA=avx512 (ISA=... to
# add others). Writes everything under $OUT (default ./device-out).
set -u
OUT=${OUT:-device-out}
mkdir -p "$OUT"
T=${THREADS:-1,2,4,8,16}
S=${SECONDS_PER_CELL:-0.3}
stamp() { echo "$(date +%T) $*"; }
{ lscpu; nproc; python3 -c 'import torch; print("torch", torch.__version__, torch.backends.mkldnn.is_available())'; } > "$OUT/machine.txt" 2>&1
[ -x .device/fma_peak ] && .device/fma_peak | tee -a "$OUT/machine.txt"
for isa in ${ISA:-avx512}; do
  for t in ferroconv against_reference determinism winograd; do
    FERROCONV_ISA=$isa timeout 90 .device/$t > /tmp/test.txt 2>&1; rc=$?
    { echo "== $t FERROCONV_ISA=$isa rc=$rc"; grep -E "test result|panicked|FAILED" -A3 /tmp/test.txt | head -12; } >> "$OUT/tests.txt"
  done
done
cat "$OUT/tests.txt"; stamp tests done
timeout 200 python3 .device/torch_suite.py benches/bench-shapes.csv --threads "$T" --seconds "$S" > "$OUT/torch.csv" 2> "$OUT/torch.err"
stamp "torch rc=$?"
timeout 200 .device/bench_report --no-naive --threads "$T" --seconds "$S" --csv "$OUT/ours.csv" --torch "$OUT/torch.csv" > "$OUT/report.md" 2>&1
stamp "report rc=$?"
# The AVX-512 kernels' speed against the AVX2 ones at 1 and 16 threads.
FERROCONV_ISA=avx2 timeout 100 .device/bench_report --no-naive --threads 1,16 --seconds "$S" --csv "$OUT/avx2.csv" > /dev/null 2>&1
stamp "avx2 rc=$?"
tail -5 "$OUT/report.md"
