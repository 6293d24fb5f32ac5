"""Patch sizes of established tools for a base -> new pair (the comparison column of bench/delta.py)."""

from __future__ import annotations

import io
import lzma
import shutil
import subprocess
import tempfile
from pathlib import Path


def zstd_patch(base: Path, new: Path) -> int | None:
    if not shutil.which("zstd"):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "patch.zst"
        subprocess.run(
            ["zstd", "-q", "-19", "--patch-from", str(base), str(new), "-o", str(out)],
            check=True,
            capture_output=True,
        )
        return out.stat().st_size


def xdelta3_patch(base: Path, new: Path) -> int | None:
    if not shutil.which("xdelta3"):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "patch.vcdiff"
        subprocess.run(
            ["xdelta3", "-9", "-e", "-s", str(base), str(new), str(out)], check=True, capture_output=True
        )
        return out.stat().st_size


def bsdiff4_patch(base: bytes, new: bytes) -> int:
    import bsdiff4

    return len(bsdiff4.diff(base, new))


def detools_patch(base: bytes, new: bytes, compression: str) -> int:
    import detools

    patch = io.BytesIO()
    detools.create_patch(io.BytesIO(base), io.BytesIO(new), patch, compression=compression)
    return len(patch.getvalue())


def lzma_full(new: bytes) -> int:
    return len(lzma.compress(new, preset=9 | lzma.PRESET_EXTREME))


def all_baselines(base_path: Path, new_path: Path) -> dict[str, int | None]:
    base, new = base_path.read_bytes(), new_path.read_bytes()
    return {
        "zstd -19 --patch-from": zstd_patch(base_path, new_path),
        "xdelta3 -9": xdelta3_patch(base_path, new_path),
        "bsdiff4": bsdiff4_patch(base, new),
        "detools (lzma)": detools_patch(base, new, "lzma"),
        "detools (heatshrink)": detools_patch(base, new, "heatshrink"),
        "detools (none)": detools_patch(base, new, "none"),
        "lzma (whole new)": lzma_full(new),
    }
