"""Generated test models, built once per generator version in child processes (TensorFlow is slow to
import and keeps state), shared by the engine's differential tests and their benchmarks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.paths import REPO


def build_missing(names: list[str], generator_module: str, cache: Path, jobs: int = 1) -> Path:
    """Build the models of `names` missing from `cache` with `python -m generator_module cache names...`
    in `jobs` child processes; returns the cache directory."""
    missing = [n for n in names if not (cache / f"{n}.tflite").exists()]
    if missing:
        cache.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="", PYTHONWARNINGS="ignore")
        cmd = [sys.executable, "-m", generator_module, str(cache)]
        procs = [
            subprocess.Popen(
                [*cmd, *missing[i::jobs]],
                cwd=REPO,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for i in range(min(jobs, len(missing)))
        ]
        for proc in procs:
            _, err = proc.communicate(timeout=3600)
            if proc.returncode != 0:
                raise RuntimeError(f"model generation failed: {err.decode()[-2000:]}")
    return cache
