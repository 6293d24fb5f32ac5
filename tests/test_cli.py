"""The `tinyfleet` entry point: usage mistakes and failures are one line with a non-zero exit code."""

from __future__ import annotations

import subprocess
import sys

import pytest


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tinyfleet.cli", *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("package", "verify"), "Missing argument"),
        (("no-such-command",), "No such command"),
        (("models", "compress", "--task", "imagenet", "--out", "x.tflite"), "unknown task"),
    ],
)
def test_usage_errors_are_one_line_with_exit_code_2(args: tuple[str, ...], needle: str) -> None:
    result = run(*args)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0] and "--help" in lines[0]
    assert "Traceback" not in result.stderr


def test_a_refused_package_is_one_line() -> None:
    result = run("package", "inspect", "/no/such/file.tfpkg")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1
