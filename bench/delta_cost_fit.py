"""Fit the delta encoder's cost model (tinyfleet/signing/delta.py COSTS) to the Cortex-M4 decoder.

Every candidate stream the encoder makes for the selected pairs of bench/delta_m4.py (and, unless
--pairs-only, for each new model alone) is decoded on the M4 (QEMU -icount, instructions); the work the
encoder counted for it (delta.Work) is fitted to the measured counts by non-negative least squares on the
relative error, direct bits held at their current price (few streams have any). Prints the fitted
COSTS line and, for the current and the fitted prices, each stream's estimate against its measurement.

    .venv/bin/python bench/delta_cost_fit.py [--only hello_world --only w16 ...] [--pairs-only]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy.optimize import nnls

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from delta_m4 import bench_files, measure  # noqa: E402
from m4_common import skipped  # noqa: E402

from tinyfleet.signing import delta  # noqa: E402

DEFAULT_ONLY = ("hello_world", "micro_speech", "w16", "w192.pruned")
Row = tuple[str, bytes, bytes, bytes, delta.Work]  # name, base, stream, new model, work


def rows_for(only: tuple[str, ...], pairs_only: bool) -> list[Row]:
    rows: list[Row] = []
    seen: set[bytes] = set()
    for name, base_path, new_path in bench_files():
        if not any(o in name for o in only):
            continue
        base, new = base_path.read_bytes(), new_path.read_bytes()
        for label, b in ((name, base), (name + "(full)", b"")):
            if (label.endswith("(full)") and pairs_only) or (not b and new in seen):
                continue
            for i, (stream, work) in enumerate(delta.candidate_work(new, b)):
                if stream not in {r[2] for r in rows}:
                    rows.append((f"{label}#{i}", b, stream, new, work))
        seen.add(new)
    return rows


def fit(works: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """Prices per unit of work minimizing the relative error, direct bits fixed at the current price."""
    fixed = delta.Work._fields.index("directs")
    free = [i for i in range(works.shape[1]) if i != fixed]
    rest = measured - works[:, fixed] * delta.COSTS[fixed]
    prices, _ = nnls(works[:, free] / measured[:, None], rest / measured)
    out = np.zeros(works.shape[1])
    out[free] = prices
    out[fixed] = delta.COSTS[fixed]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", action="append", help="pairs whose name contains this (repeatable)")
    ap.add_argument("--pairs-only", action="store_true", help="no full (no base) streams")
    args = ap.parse_args()
    if skipped():
        return
    rows = rows_for(tuple(args.only or DEFAULT_ONLY), args.pairs_only)
    counts = measure([r[:4] for r in rows])
    works = np.array([r[4] for r in rows], dtype=float)
    measured = np.array([counts[r[0]] for r in rows])
    prices = fit(works, measured)
    fitted = delta.Work(*(round(p) for p in prices))
    print(f"{len(rows)} streams; fitted: COSTS = {fitted!r}")
    print("| stream | version | bytes | measured per output byte | current estimate | fitted estimate |")
    print("|---|---:|---:|---:|---:|---:|")
    errors: dict[str, list[float]] = {"current": [], "fitted": []}
    for row, m in zip(rows, measured, strict=True):
        cur, new_est = delta.decode_cost(row[4]), float(np.dot(prices, row[4]))
        errors["current"].append(abs(cur - m) / m)
        errors["fitted"].append(abs(new_est - m) / m)
        n = len(row[3])
        print(f"| {row[0]} | {row[2][2]} | {len(row[2])} | {m / n:.1f} | {cur / n:.1f} | {new_est / n:.1f} |")
    for label, errs in errors.items():
        e = np.array(errs)
        print(f"{label}: median error {np.median(e):.1%}, within 10% on {np.sum(e <= 0.1)} of {len(e)}, "
              f"worst {e.max():.1%}")  # fmt: skip


if __name__ == "__main__":
    main()
