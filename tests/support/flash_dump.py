"""Does a flash dump show a model? The check of encryption at rest (docs/PROTOCOL.md 6.6), shared by the
device, simulator and QEMU tests: some 32-byte window of the clear model occurs anywhere in the image.
Windows of fewer than 8 distinct byte values (padding such as 32 zero bytes, present in every flatbuffer
and in manifests) are not model content and do not count."""

from __future__ import annotations

WINDOW = 32
MIN_DISTINCT = 8


def shows(image: bytes, clear: bytes) -> bool:
    spans = (clear[i : i + WINDOW] for i in range(len(clear) - WINDOW + 1))
    windows = {w for w in spans if len(set(w)) >= MIN_DISTINCT}
    return any(image[i : i + WINDOW] in windows for i in range(len(image) - WINDOW + 1))
