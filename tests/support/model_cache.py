"""Generated test models, built once per generator version in child processes (TensorFlow is slow to
import and keeps state), shared by the engine's differential tests and their benchmarks."""

from __future__ import annotations

import hashlib
import inspect
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.paths import REPO


def generator_key(*functions: Callable[..., Any]) -> str:
    """The cache key of a generator: a hash of its functions' source text, so that changing any of them
    builds its models again (in a new directory: the old ones stay valid for the old source)."""
    return hashlib.sha256("".join(inspect.getsource(f) for f in functions).encode()).hexdigest()[:12]


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


def write_models(out_dir: str, names: list[str], build: Callable[[str, Any], bytes]) -> None:
    """The child process's side of build_missing: each model of `names` missing from out_dir, built by
    build(name, tensorflow)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    for name in names:
        path = Path(out_dir) / f"{name}.tflite"
        if not path.exists():
            data = build(name, tf)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.replace(path)  # a killed build leaves no truncated model behind
