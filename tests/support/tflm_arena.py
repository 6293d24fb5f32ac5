"""TFLM's arena figure for a model, the bound the engine's arena is tested against (tests/device)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path


def tflm_arena_bytes(path: Path) -> int:
    """TFLM's arena figure: the RecordingMicroAllocator's total, printed by print_allocations()."""
    code = (
        "import sys\nfrom tflite_micro.python.tflite_micro import runtime\n"
        "runtime.Interpreter.from_file(sys.argv[1]).print_allocations()\n"
    )
    res = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    match = re.search(r"Arena allocation total (\d+) bytes", res.stdout + res.stderr)
    assert match, res.stdout
    return int(match.group(1))
