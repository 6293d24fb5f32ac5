"""Instructions per output byte of the delta decoder on the Cortex-M4 (QEMU mps2-an386, -icount shift=0).

Builds bench/delta_m4/main.c with the core's delta*.c and the mps2-an386 port's startup and board files
(-Os, hard float, as the firmware), with the streams compiled in, and runs it: every guest instruction
takes 1 ns of virtual time, so SysTick ticks count instructions (a loop of known length calibrates the
ratio). The base is read through the flash contract from ROM, the output programmed into PSRAM in 256-byte
payload chunks; the firmware checks the output's checksum.

    .venv/bin/python bench/delta_m4.py [--lto]

--lto links the decoder with link-time optimization, as the update firmware is (ports/mps2-an386/Makefile).
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from delta import SHARED_PAIRS, pipeline_pairs  # noqa: E402
from m4_common import CORE_SRC, PORT, build_image, c_array, run_image, skipped  # noqa: E402

from tinyfleet.signing import delta  # noqa: E402

LINE = re.compile(r"^BENCH (\S+) (\d+) ticks=(\d+)(?: ok=(\d))?$")


def streams_header(pairs: list[tuple[str, bytes, bytes, bytes]]) -> str:
    out = [
        "#include <stdint.h>\ntypedef struct { const char *name; const uint8_t *base; uint32_t base_len;",
        " const uint8_t *stream; uint32_t stream_len; uint32_t out_len; uint32_t out_sum; }",
        " bench_stream_t;\n",
    ]
    rows = []
    for i, (name, base, stream, new) in enumerate(pairs):
        out += [c_array(f"base{i}", base or b"\0"), c_array(f"stream{i}", stream)]
        checksum = 0
        for b in new:
            checksum = (checksum * 31 + b) & 0xFFFFFFFF
        rows.append(
            f'{{"{name}", base{i}, {len(base)}u, stream{i}, {len(stream)}u, {len(new)}u, {checksum}u}}'
        )
    out.append(
        f"#define BENCH_STREAMS {len(rows)}u\n"
        f"static const bench_stream_t bench_streams[] = {{{','.join(rows)}}};\n"
    )
    return "".join(out)


def build(tmp: Path, header: str, lto: bool = False) -> Path:
    sources = [ROOT / "bench" / "delta_m4" / "main.c", *sorted(CORE_SRC.glob("delta*.c"))]
    sources += [PORT / name for name in ("startup.c", "board_mps2.c", "ram_flash.c", "provision.c")]
    return build_image(tmp, ("streams.h", header), sources, "delta_bench.elf", ["-flto=auto"] if lto else [])


def main() -> None:
    if skipped():
        return
    files = []
    if SHARED_PAIRS.is_dir():
        for name, b, n in (("hello_world.1->2", "hello_world_int8.1", "hello_world_int8.2"),
                           ("micro_speech.0->2", "micro_speech.0", "micro_speech.2")):  # fmt: skip
            files.append((name, SHARED_PAIRS / f"{b}.tflite", SHARED_PAIRS / f"{n}.tflite"))
    files += [
        (label.replace(" v1 -> ", ".").replace(" ", ""), b, n) for label, b, n in pipeline_pairs(16)[:2]
    ]
    files += [
        (label.replace(" v1 -> ", ".").replace(" ", ""), b, n) for label, b, n in pipeline_pairs(192)[:1]
    ]
    pairs = []
    for name, base_path, new_path in files:
        base, new = base_path.read_bytes(), new_path.read_bytes()
        pairs.append((name, base, delta.encode(new, base), new))
        if len(new) < 64 * 1024:  # the ROM holds one 100 KB pair, not its compressed model as well
            pairs.append((name + "(full)", b"", delta.encode(new), new))
    with tempfile.TemporaryDirectory() as tmp:
        lines = run_image(build(Path(tmp), streams_header(pairs), lto="--lto" in sys.argv[1:]))
    per_tick = 0.0
    print("| stream | format | stream bytes | output bytes | instructions | per output byte |")
    print("|---|---|---:|---:|---:|---:|")
    formats = {name: (stream[2], len(stream)) for name, _, stream, _ in pairs}
    for line in lines:
        m = LINE.match(line)
        if m is None:
            continue
        name, size, ticks = m.group(1), int(m.group(2)), int(m.group(3))
        if name == "calib":
            per_tick = size / ticks
            continue
        if m.group(4) != "1":
            sys.exit(f"{name}: the M4 decoded a wrong model")
        insns = ticks * per_tick
        version, stream_len = formats[name]
        print(f"| {name} | v{version} | {stream_len} | {size} | {insns:,.0f} | {insns / size:.1f} |")
    print(f"\ncalibration: {per_tick:.2f} instructions per SysTick tick")


if __name__ == "__main__":
    main()
