"""A whole install on the Cortex-M4, clear against encrypted (QEMU mps2-an386, -icount shift=0).

Builds bench/install_m4/main.c with every core source and the mps2-an386 port's startup and board files
(-Os, hard float, as the firmware, with decryption: no TFA_NO_ENCRYPTION), the packages compiled in, and
runs it: every guest instruction takes 1 ns of virtual time, so SysTick ticks count instructions (a loop
of known length calibrates the ratio). Each package goes through the real runtime on a RAM flash: begin,
the key wrap (encrypted only), 256-byte chunks, end, activate + trial self-test, and the model handed to
the engine (for a model encrypted at rest: decrypted into RAM and re-hashed). Packages: the committed
test models (tests/vectors/model.tflite, model_large.tflite), raw and compressed, each clear and
encrypted for one device key.

    .venv/bin/python bench/install_m4.py
"""

from __future__ import annotations

import hashlib
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from m4_common import CORE_SRC, PORT, build_image, c_array, run_image, skipped  # noqa: E402

from tinyfleet.signing import delta  # noqa: E402
from tinyfleet.signing import encryption as enc  # noqa: E402
from tinyfleet.signing import manifest as mf  # noqa: E402
from tinyfleet.signing.keys import load_private_key  # noqa: E402
from tinyfleet.signing.package import build_package  # noqa: E402

VECTORS = ROOT / "tests" / "vectors"
HARDWARE_CLASS = 7
SLOT_SIZE = 64 * 1024
LINE = re.compile(r"^BENCH (\S+) (\S+) (\d+) ticks=(\d+) rc=(\d)$")
PHASES = ("begin", "key", "chunks", "end", "activate+selftest", "model")


def packages() -> list[tuple[str, bytes, bytes | None, int]]:
    """(name, package, wrap or None, model size) for each model, encoding and clear/encrypted."""
    signer = load_private_key(VECTORS / "key_trusted.pem")
    device_public = enc.public_key_of(DEVICE_PRIVATE)
    out: list[tuple[str, bytes, bytes | None, int]] = []
    for model_name in ("model.tflite", "model_large.tflite"):
        model = (VECTORS / model_name).read_bytes()
        common: dict[str, Any] = {
            "name": "bench",
            "version": "1.0.0",
            "sequence": 1,
            "security_counter": 1,
            "hardware_class": HARDWARE_CLASS,
            "min_runtime_version": "0.1.0",
        }
        for encoding, payload in ((mf.ENC_RAW, None), (mf.ENC_COMPRESSED, delta.encode(model))):
            clear = build_package(model, signer, payload=payload, payload_encoding=encoding, **common)
            label = f"{model_name.split('.')[0]}/{'raw' if encoding == mf.ENC_RAW else 'compressed'}"
            out.append((label + "/clear", clear, None, len(model)))
            key = enc.new_content_key()
            sealed = enc.encrypt_package(clear, key, signer)
            wrap = enc.wrap_content_key(key, device_public, sealed[: mf.MANIFEST_SIZE])
            out.append((label + "/encrypted", sealed, wrap, len(model)))
    return out


DEVICE_PRIVATE = hashlib.sha256(b"tinyfleet install_m4 bench device").digest()


def header(pkgs: list[tuple[str, bytes, bytes | None, int]]) -> str:
    public = bytes.fromhex((VECTORS / "key_trusted.pub").read_text().strip())
    out = [
        "#include <stdint.h>\n#include <stddef.h>\n",
        f"#define BENCH_HARDWARE_CLASS {HARDWARE_CLASS}u\n#define BENCH_SLOT_SIZE {SLOT_SIZE}u\n",
        f"#define BENCH_MODEL_RAM {SLOT_SIZE}u\n",
        c_array("bench_key_id", hashlib.sha256(public).digest()[:8]),
        c_array("bench_public_key", public),
        c_array("bench_device_private", DEVICE_PRIVATE),
        "typedef struct { const char *name; const uint8_t *pkg; uint32_t len; const uint8_t *wrap;",
        " uint32_t model_size; } bench_package_t;\n",
    ]
    rows = []
    for i, (name, pkg, wrap, size) in enumerate(pkgs):
        out.append(c_array(f"pkg{i}", pkg))
        if wrap is not None:
            out.append(c_array(f"wrap{i}", wrap))
        rows.append(f'{{"{name}", pkg{i}, {len(pkg)}u, {f"wrap{i}" if wrap else "NULL"}, {size}u}}')
    out.append(f"#define BENCH_PACKAGES {len(rows)}u\n")
    out.append(f"static const bench_package_t bench_packages[] = {{{','.join(rows)}}};\n")
    return "".join(out)


def build(tmp: Path, text: str) -> Path:
    sources = [ROOT / "bench" / "install_m4" / "main.c", *sorted(CORE_SRC.glob("*.c"))]
    sources += [PORT / name for name in ("startup.c", "board_mps2.c")]
    return build_image(tmp, ("packages.h", text), sources, "install_bench.elf")


def main() -> None:
    if skipped():
        return
    pkgs = packages()
    with tempfile.TemporaryDirectory() as tmp:
        lines = run_image(build(Path(tmp), header(pkgs)))
    per_tick = 0.0
    table: dict[str, dict[str, float]] = {}
    sizes: dict[str, int] = {}
    for line in lines:
        m = LINE.match(line)
        if m is None:
            continue
        name, phase, size, ticks, rc = m.group(1), m.group(2), int(m.group(3)), int(m.group(4)), m.group(5)
        if name == "calib":
            per_tick = size / ticks
            continue
        if rc != "0":
            sys.exit(f"{name}: the install failed on the M4")
        table.setdefault(name, {})[phase] = ticks * per_tick
        sizes[name] = size
    print("| package | model B | " + " | ".join(PHASES) + " | install (begin..end) | install per model KiB |")
    print("|---|---:|" + "---:|" * (len(PHASES) + 2))
    for name, phases in table.items():
        install = sum(phases[p] for p in ("begin", "key", "chunks", "end"))
        cells = " | ".join(f"{phases[p]:,.0f}" for p in PHASES)
        per_kib = install / (sizes[name] / 1024)
        print(f"| {name} | {sizes[name]} | {cells} | {install:,.0f} | {per_kib:,.0f} |")
    print(f"\ncalibration: {per_tick:.2f} instructions per SysTick tick")


if __name__ == "__main__":
    main()
