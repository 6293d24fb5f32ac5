#!/usr/bin/env python3
"""The MLPerf-Tiny-shaped models of tests/support/tiny_models.py (issue 15) on the host: built (cached),
then with --host bench/engine.py's table for them (time per inference and arena against TFLM).

    .venv/bin/python bench/tiny_models.py [--small] [--host]

The M4 figures: `bench/inference_m4.py --markdown --tiny`.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.support.tiny_models import FULL, SMALL, ensure  # noqa: E402

if __name__ == "__main__":
    built = ensure(FULL + (SMALL if "--small" in sys.argv else []))
    for n, p in built.items():
        print(n, p, p.stat().st_size)
    if "--host" in sys.argv:
        sys.path.insert(0, str(REPO / "bench"))
        from engine import host_table  # bench/engine.py

        host_table(list(built.values()))
