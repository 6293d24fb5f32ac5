"""Paths every test shares: the repository, the golden vectors and the optional shared model set."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VECTORS = REPO / "tests" / "vectors"
# Real TFLM models and version pairs kept beside the repository; tests that need them skip without them.
SHARED_MODELS = REPO.parent / "shared" / "models"
