#!/usr/bin/env bash
# The 1-16 thread scaling run of docs/benchmarks.md, on a lent 16-core machine
# with PyTorch but no Rust: the binaries are built here and carried in .device/
#   cargo build --release --examples --tests
#   mkdir -p .device && cp target/release/examples/{bench_report,fma_peak} .device/
#   cp target/release/deps/{ferroconv,against_reference,determinism,winograd}-<hash> .device/{ferroconv,against_reference,determinism,winograd}
#   cp ../shared/compare/torch_suite.py .device/
# (`cargo test --release --no-run` prints the hashed test binaries' paths.)
#
# Timing is interleaved by thread count: PyTorch's cells at t threads
# (torch_suite.py, every row), then ferroconv's (bench_report), then the next
# t, so that the two figures of a ratio are taken under a minute apart. REPS
# names the repetitions of the whole sweep (default "A B"); each writes
# torch_REP.csv and ours_REP.csv. The tests run between the first and the
# second sweep under FERROCONV_ISA=avx512 (ISA=... to add others), at the
# machine's full thread count, so that the many-thread plans are checked
# against the reference there. Writes everything under $OUT (default
# ./device-out); the tables are made afterwards, where Rust is, with
#   bench_report --results ours_A.csv --torch torch_A.csv
set -u
OUT=${OUT:-device-out}
mkdir -p "$OUT"
T=${THREADS:-1,2,4,8,16}
S=${SECONDS_PER_CELL:-0.3}
stamp() { echo "$(date +%T) $*" | tee -a "$OUT/log.txt"; }
{ lscpu; nproc; python3 -c 'import torch; print("torch", torch.__version__, torch.backends.mkldnn.is_available())'; } > "$OUT/machine.txt" 2>&1
[ -x .device/fma_peak ] && timeout 30 .device/fma_peak >> "$OUT/machine.txt" 2>&1
stamp machine done
sweep() {
    local rep=$1
    echo "shape,pass,threads,median_ms,gflops" > "$OUT/torch_$rep.csv"
    : > "$OUT/ours_$rep.csv"
    for t in ${T//,/ }; do
        timeout 100 python3 .device/torch_suite.py benches/bench-shapes.csv --threads "$t" \
            --seconds "$S" 2>> "$OUT/log.txt" | tail -n +2 >> "$OUT/torch_$rep.csv"
        timeout 100 .device/bench_report --no-naive --threads "$t" --seconds "$S" \
            --csv /tmp/ours_t.csv > /dev/null 2>> "$OUT/log.txt"
        cat /tmp/ours_t.csv >> "$OUT/ours_$rep.csv"
        stamp "sweep $rep threads $t done"
    done
}
reps=(${REPS:-A B})
sweep "${reps[0]}"
for isa in ${ISA:-avx512}; do
    for t in ferroconv against_reference determinism winograd; do
        FERROCONV_ISA=$isa timeout 90 .device/$t > /tmp/test.txt 2>&1
        rc=$?
        { echo "== $t FERROCONV_ISA=$isa rc=$rc"; grep -E "test result|panicked|FAILED" -A3 /tmp/test.txt | head -12; } >> "$OUT/tests.txt"
    done
done
stamp tests done
cat "$OUT/tests.txt"
for rep in "${reps[@]:1}"; do sweep "$rep"; done
stamp all done
