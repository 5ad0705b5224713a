#!/usr/bin/env bash
# ferroconv beside PyTorch on the public suite, timed row by row and
# interleaved: for each suite row, PyTorch's cells (torch_suite.py, 1 and 2
# threads) and then ferroconv's (bench_report --only ROW), so that the two
# figures of a ratio are taken seconds apart, not minutes (this machine's
# speed drifts by 2x over minutes). Then one table and bar chart from both.
# Both libraries are timed the same way: each cell in its own loop of
# back-to-back calls after two warm-up calls, the median (torch_suite.py's loop,
# bench_report --back-to-back).
#
# Usage: scripts/side_by_side.sh [OUT_DIR]   (default side_by_side/)
# Environment: SHARED (default ../shared), THREADS (default 1,2),
# TORCH_SECONDS (default 0.5), OURS_SECONDS (default 0.7), ROWS (a comma
# list of suite rows; default all).
# Writes OUT_DIR/torch.csv, OUT_DIR/ferroconv.csv, OUT_DIR/report.md
# (the side-by-side table) and OUT_DIR/benchmarks.svg.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-side_by_side}
shared=${SHARED:-../shared}
threads=${THREADS:-1,2}
mkdir -p "$out"
cargo build --release --example bench_report
bin=target/release/examples/bench_report
echo "shape,pass,threads,median_ms,gflops" > "$out/torch.csv"
: > "$out/ferroconv.csv"
rows=${ROWS:-$(grep -v '^#' benches/bench-shapes.csv | cut -d, -f1 | paste -sd, -)}
for row in ${rows//,/ }; do
    python3 "$shared/compare/torch_suite.py" benches/bench-shapes.csv --threads "$threads" \
        --seconds "${TORCH_SECONDS:-0.5}" --only "$row" | tail -n +2 >> "$out/torch.csv"
    "$bin" --seconds "${OURS_SECONDS:-0.7}" --no-naive --back-to-back --threads "$threads" --only "$row" \
        --csv "$out/row.csv" > /dev/null
    cat "$out/row.csv" >> "$out/ferroconv.csv"
    echo "$row done" >&2
done
rm -f "$out/row.csv"
"$bin" --results "$out/ferroconv.csv" --torch "$out/torch.csv" --svg "$out/benchmarks.svg" > "$out/report.md"
cat "$out/report.md"
