"""Instructions per output byte of the delta decoder on the Cortex-M4 (QEMU mps2-an386, -icount shift=0).

Every benchmark pair of bench/delta.py (the three shared pairs, the eight pipeline pairs) and the
compressed full model (no base) of each pair's new model. Builds bench/delta_m4/main.c with the core's
delta*.c and the mps2-an386 port's startup and board files (-Os, hard float, as the firmware), with the
streams compiled in, and runs it: every guest instruction takes 1 ns of virtual time, so SysTick ticks
count instructions (a loop of known length calibrates the ratio). The base is read through the flash
contract from ROM, the output programmed into PSRAM in 256-byte payload chunks; the firmware checks the
output's checksum. The streams are split over as many images as the 256 KiB code region needs.

    .venv/bin/python bench/delta_m4.py [--lto] [--only SUBSTRING] [--pairs-only] [--candidates]

--candidates: instead, every stream the encoder chooses from (delta.candidates) for the pairs --only
selects, with its estimated (delta.decode_cost) and measured instructions per output byte.

--lto links the decoder with link-time optimization, as the update firmware is (ports/mps2-an386/Makefile).
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from delta import REAL_PAIRS, SHARED_PAIRS, pipeline_pairs  # noqa: E402
from m4_common import CORE_SRC, PORT, build_image, c_array, run_image, skipped  # noqa: E402

from tinyfleet.signing import delta  # noqa: E402

LINE = re.compile(r"^BENCH (\S+) (\d+) ticks=(\d+)(?: ok=(\d))?$")
IMAGE_DATA = 180 * 1024  # bases and streams per image: the code region is 256 KiB, the decoder ~10 KiB

Stream = tuple[str, bytes, bytes, bytes]  # name, base (b"" for a full model), stream, new model


def streams_header(pairs: list[Stream]) -> str:
    out = [
        "#include <stdint.h>\ntypedef struct { const char *name; const uint8_t *base; uint32_t base_len;",
        " const uint8_t *stream; uint32_t stream_len; uint32_t out_len; uint32_t out_sum; }",
        " bench_stream_t;\n",
    ]
    rows = []
    bases: dict[bytes, str] = {}  # pairs of one pipeline share their base: compiled in once
    for i, (name, base, stream, new) in enumerate(pairs):
        if base not in bases:
            bases[base] = f"base{len(bases)}"
            out.append(c_array(bases[base], base or b"\0"))
        out.append(c_array(f"stream{i}", stream))
        checksum = 0
        for b in new:
            checksum = (checksum * 31 + b) & 0xFFFFFFFF
        rows.append(
            f'{{"{name}", {bases[base]}, {len(base)}u, stream{i}, {len(stream)}u, {len(new)}u, {checksum}u}}'
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


def bench_files() -> list[tuple[str, Path, Path]]:
    """(name, base, new) of every pair of bench/delta.py, named as in the tables of docs/BENCHMARKS.md."""
    files = []
    if SHARED_PAIRS.is_dir():
        for b, n in REAL_PAIRS:
            stem, old = b.rsplit(".", 1)
            name = f"{stem.replace('_int8', '')}.{old}->{n.rsplit('.', 1)[1]}"  # hello_world.1->2
            files.append((name, SHARED_PAIRS / f"{b}.tflite", SHARED_PAIRS / f"{n}.tflite"))
    for width in (16, 192):
        files += [
            (label.replace(" v1 -> ", ".").replace(" ", ""), b, n) for label, b, n in pipeline_pairs(width)
        ]
    return files


def make_streams(only: str | None, pairs_only: bool) -> list[Stream]:
    streams: list[Stream] = []
    done_full: set[bytes] = set()
    for name, base_path, new_path in bench_files():
        if only is not None and only not in name:
            continue
        base, new = base_path.read_bytes(), new_path.read_bytes()
        streams.append((name, base, delta.encode(new, base), new))
        if not pairs_only and new not in done_full:
            done_full.add(new)
            streams.append((name + "(full)", b"", delta.encode(new), new))
    return streams


def images(streams: list[Stream]) -> list[list[Stream]]:
    """Streams grouped so that each image's bases (once each) and streams fit IMAGE_DATA."""
    groups: list[list[Stream]] = []
    sizes: list[int] = []
    for s in streams:
        for group, size in zip(groups, sizes, strict=True):
            bases = {g[1] for g in group}
            extra = len(s[2]) + (0 if s[1] in bases else len(s[1]))
            if size + extra <= IMAGE_DATA:
                group.append(s)
                sizes[groups.index(group)] += extra
                break
        else:
            groups.append([s])
            sizes.append(len(s[1]) + len(s[2]))
    return groups


def measure(streams: list[Stream], lto: bool = False) -> dict[str, float]:
    """Instructions of each stream's decoding (name -> count); exits if the M4 decoded a wrong model."""
    counts: dict[str, float] = {}
    for group in images(streams):
        with tempfile.TemporaryDirectory() as tmp:
            lines = run_image(build(Path(tmp), streams_header(group), lto=lto), timeout=300.0)
        per_tick = 0.0
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
            counts[name] = ticks * per_tick
    return counts


def candidates(only: str | None) -> None:
    """Every candidate stream of the selected pairs, estimated and measured; * marks the one kept."""
    rows = []
    for name, base_path, new_path in bench_files():
        if only is not None and only not in name:
            continue
        base, new = base_path.read_bytes(), new_path.read_bytes()
        made = dict(delta.candidates(new, base))  # the same stream at two rates: one row
        kept = delta.choose(list(made.items()), len(new))
        for i, (stream, cost) in enumerate(sorted(made.items(), key=lambda m: len(m[0]))):
            rows.append((f"{name}#{i}", base, stream, new, cost, stream == kept))
    counts = measure([r[:4] for r in rows])
    print("| stream | stream bytes | estimated per output byte | measured per output byte | kept |")
    print("|---|---:|---:|---:|---|")
    for name, _, stream, new, cost, chosen in rows:
        print(f"| {name} | {len(stream)} | {cost / len(new):.1f} | {counts[name] / len(new):.1f} | "
              f"{'*' if chosen else ''} |")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lto", action="store_true")
    ap.add_argument("--only", help="only the pairs whose name contains this")
    ap.add_argument("--pairs-only", action="store_true", help="no full (no base) streams")
    ap.add_argument("--candidates", action="store_true", help="every stream the encoder chooses from")
    args = ap.parse_args()
    if skipped():
        return
    if args.candidates:
        candidates(args.only)
        return
    streams = make_streams(args.only, args.pairs_only)
    counts = measure(streams, args.lto)
    print("| stream | format | stream bytes | output bytes | instructions | per output byte |")
    print("|---|---|---:|---:|---:|---:|")
    worst = 0.0
    for name, _, stream, new in streams:
        insns = counts[name]
        per_byte = insns / len(new)
        if not name.endswith("(full)"):
            worst = max(worst, per_byte)
        print(f"| {name} | v{stream[2]} | {len(stream)} | {len(new)} | {insns:,.0f} | {per_byte:.1f} |")
    print(f"\nworst pair stream: {worst:.1f} instructions per output byte (target 60)")


if __name__ == "__main__":
    main()
