"""Write the delta decoder's golden vectors (run by hand; the outputs are committed).

vectors/delta/: base.bin and new.bin (a synthetic "model update": shifted sections, retrained bytes,
inserted and deleted runs), delta.bin (new against base), full.bin (new compressed alone), each encoded
by tinyfleet/signing/delta.py, plus blk.bin: a multi-block stream (1 KiB blocks) for resume tests.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from tinyfleet.signing import delta  # noqa: E402


def make_pair(seed: int = 7) -> tuple[bytes, bytes]:
    rng = random.Random(seed)
    weights = bytes(min(255, max(0, int(rng.gauss(128, 30)))) for _ in range(6000))
    header = bytes(rng.randrange(256) for _ in range(300))
    base = header + weights + bytes(rng.randrange(256) for _ in range(700))
    retrained = bytes((b + rng.choice((-2, -1, 0, 0, 1, 2))) & 0xFF for b in weights)
    new = header[:100] + b"\x00" * 12 + header[100:] + retrained[:3000] + weights[3000:] + base[-500:]
    return base, new


def main() -> None:
    out = HERE / "vectors" / "delta"
    out.mkdir(parents=True, exist_ok=True)
    base, new = make_pair()
    (out / "base.bin").write_bytes(base)
    (out / "new.bin").write_bytes(new)
    (out / "delta.bin").write_bytes(delta.encode(new, base))
    (out / "full.bin").write_bytes(delta.encode(new))
    (out / "blk.bin").write_bytes(delta.encode(new, base, block_log2=10))
    for name in ("delta.bin", "full.bin", "blk.bin"):
        stream = (out / name).read_bytes()
        assert delta.decode(stream, base if name != "full.bin" else b"") == new
        print(f"{name}: {len(stream)} bytes for {len(new)}")


if __name__ == "__main__":
    main()
