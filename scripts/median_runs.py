#!/usr/bin/env python3
"""Cell-by-cell medians of several side_by_side.sh runs.

Usage: scripts/median_runs.py OUT_DIR RUN_DIR [RUN_DIR ...]

Each RUN_DIR holds the torch.csv and ferroconv.csv of one
`scripts/side_by_side.sh` run. OUT_DIR receives torch.csv and ferroconv.csv
in the same formats, each cell (shape, pass, threads) holding the run with the
median GFLOP/s of that cell (an odd number of runs picks a measured run, not
an average), and ratios.csv: per cell, every run's ratio ferroconv / PyTorch
(the two timed seconds apart in the same run) and their median, which is the
figure to quote on a machine whose speed drifts between runs.
"""

import csv
import statistics
import sys
from pathlib import Path


def read(path):
    with open(path, newline="") as f:
        rows = [r for r in csv.reader(f) if r]
    return rows[0], {(r[0], r[1], r[2]): r for r in rows[1:] if r[0] != "shape"}


def median_row(rows, col):
    ordered = sorted(rows, key=lambda r: float(r[col]))
    return ordered[(len(ordered) - 1) // 2]


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    out = Path(sys.argv[1])
    runs = [Path(p) for p in sys.argv[2:]]
    out.mkdir(parents=True, exist_ok=True)
    ratios = {}
    for name in ("torch.csv", "ferroconv.csv"):
        tables = [read(r / name) for r in runs]
        header = tables[0][0]
        col = header.index("gflops")
        keys = list(tables[0][1])
        with open(out / name, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            for k in keys:
                w.writerow(median_row([t[1][k] for t in tables if k in t[1]], col))
        for i, t in enumerate(tables):
            for k, r in t[1].items():
                ratios.setdefault(k, [None] * len(runs))
                g = float(r[col])
                if name == "torch.csv":
                    ratios[k][i] = g
                elif ratios[k][i]:
                    ratios[k][i] = g / ratios[k][i]
    with open(out / "ratios.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["shape", "pass", "threads"] + [f"run{i + 1}" for i in range(len(runs))] + ["median"])
        for k, rs in ratios.items():
            rs = [r for r in rs if r is not None]
            w.writerow(list(k) + [f"{r:.2f}" for r in rs] + [f"{statistics.median(rs):.2f}"])


if __name__ == "__main__":
    main()
