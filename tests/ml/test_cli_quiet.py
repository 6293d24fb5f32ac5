"""`tinyfleet models compress` keeps TensorFlow's logging off the terminal unless --verbose."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="TensorFlow is not installed"),
]

TF_NOISE = re.compile(r"tensorflow|absl|oneDNN|cuda|^[WIE]0000", re.I | re.M)


COMMAND = [sys.executable, "-m", "tinyfleet.cli", "models", "compress", "--task", "vibration"]


def compress(out: Path, *extra: str) -> str:
    # Not what earlier in-process TensorFlow work left in this process's environment (quiet_tensorflow sets
    # TF_CPP_MIN_LOG_LEVEL / ABSL_MIN_LOG_LEVEL): the command alone decides what is shown.
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "ABSL_MIN_LOG_LEVEL")}
    done = subprocess.run(
        [*COMMAND, "--epochs", "1", "--samples", "300", "--out", str(out), *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def test_quiet_by_default_and_logs_with_verbose(tmp_path: Path) -> None:
    quiet = compress(tmp_path / "a.tflite")
    assert not TF_NOISE.findall(quiet), quiet
    assert "wrote" in quiet and (tmp_path / "a.tflite").stat().st_size > 0
    loud = compress(tmp_path / "b.tflite", "--verbose")
    assert TF_NOISE.findall(loud)
