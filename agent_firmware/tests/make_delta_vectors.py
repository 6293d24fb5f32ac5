"""Write the delta decoder's golden vectors (run by hand; the outputs are committed).

vectors/delta/: base.bin and new.bin (a synthetic "model update": shifted sections, retrained bytes,
inserted and deleted runs), delta.bin (new against base), full.bin (new compressed alone), each encoded
by tinyfleet/signing/delta.py, plus blk.bin: a multi-block stream (1 KiB blocks) for resume tests.
Format version 2 (weight runs): t_base.bin (examples/vibration-1.0.0.tflite) and t_new.bin (the 1.1.0
model with its first layer replaced by 1.0.0's nudged by +-1 in 60% of its weights: a fine-tuned
layer, coded as a diff run; the other layers are plain runs; biases and scales word runs, bias scales
product runs), t_delta.bin, t_blk.bin (1 KiB blocks: runs cut at block ends) and t_full.bin (no base,
1 KiB blocks), all forced to version 2 with a run for every tensor and vector.
Format version 3 (table runs): t3_delta.bin, t3_blk.bin and t3_full.bin, the same pair forced to version
3 with a table run for every weight tensor (plain and diff, exact and bucketed tables).
Format version 4 (literal runs reusing a table): t4_delta.bin and t4_blk.bin (t4_new.bin, new.bin with two
more changed stretches, against base.bin; no weight runs) and t4_full.bin (t_new.bin alone, 1 KiB blocks,
version 3's forced runs), each with a literal run over every stretch of literals the LZ coder leaves (the
first of a block's group sends the table as kind 5, the others reuse it, kind 7). delta.bin, full.bin and
blk.bin stay versions 1-3 streams.
Format version 5 (ladder numbers): t5_delta.bin, t5_blk.bin and t5_full.bin, the same pairs and runs as
the t4_ vectors in version 5, with numbers of all four bit-count classes and some wider than 17 bits (two
equal-chance steps).
Format version 6 (adaptive frequency symbols): t6_delta.bin, t6_blk.bin and t6_full.bin, the same pairs and
runs as the t4_ vectors in version 6 (literals as two adaptive nibbles, numbers' bit counts as adaptive
symbols).
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from tinyfleet.signing import delta, rangecoder, table_coder, tensor_coder  # noqa: E402
from tinyfleet.signing.delta_parser import _Parser  # noqa: E402
from tinyfleet.signing.rangecoder import LADDER_ESCAPES, LADDER_FIRST, NUMBER_PROBS, Decoder  # noqa: E402


def make_pair(seed: int = 7) -> tuple[bytes, bytes]:
    rng = random.Random(seed)
    weights = bytes(min(255, max(0, int(rng.gauss(128, 30)))) for _ in range(6000))
    header = bytes(rng.randrange(256) for _ in range(300))
    base = header + weights + bytes(rng.randrange(256) for _ in range(700))
    retrained = bytes((b + rng.choice((-2, -1, 0, 0, 1, 2))) & 0xFF for b in weights)
    new = header[:100] + b"\x00" * 12 + header[100:] + retrained[:3000] + weights[3000:] + base[-500:]
    return base, new


def make_literal_pair(seed: int = 13) -> tuple[bytes, bytes]:
    """base.bin and new.bin with two more stretches of new bytes in its header, so that a version 4 stream
    has several literal runs in one block (t4_new.bin)."""
    base, new = make_pair()
    rng = random.Random(seed)
    changed = bytearray(new)
    for start in (40, 160):
        changed[start : start + 24] = bytes(rng.randrange(256) for _ in range(24))
    return base, bytes(changed)


def make_tensor_pair(seed: int = 11) -> tuple[bytes, bytes]:
    base = (HERE.parents[1] / "examples" / "vibration-1.0.0.tflite").read_bytes()
    new = bytearray((HERE.parents[1] / "examples" / "vibration-1.1.0.tflite").read_bytes())
    first = tensor_coder.find_weight_tensors(base)[0]
    assert tensor_coder.find_weight_tensors(bytes(new))[0] == first, "the two examples' layouts differ"
    rng = random.Random(seed)
    for i in range(first.start, first.start + first.length):
        new[i] = (base[i] + (rng.choice((-1, 1)) if rng.random() < 0.6 else 0)) & 0xFF
    return base, bytes(new)


def main() -> None:
    out = HERE / "vectors" / "delta"
    out.mkdir(parents=True, exist_ok=True)
    base, new = make_pair()
    (out / "base.bin").write_bytes(base)
    (out / "new.bin").write_bytes(new)
    v13 = (delta.FORMAT_VERSION, delta.FORMAT_TABLE)  # the encoder's versions when these were made
    (out / "delta.bin").write_bytes(delta.encode(new, base, versions=v13))
    (out / "full.bin").write_bytes(delta.encode(new, versions=v13))
    (out / "blk.bin").write_bytes(delta.encode(new, base, block_log2=10, versions=v13))
    for name in ("delta.bin", "full.bin", "blk.bin"):
        stream = (out / name).read_bytes()
        assert delta.decode(stream, base if name != "full.bin" else b"") == new
        print(f"{name}: {len(stream)} bytes for {len(new)}")
    t_base, t_new = make_tensor_pair()
    kinds = {r.kind for r in tensor_coder.plan_runs(t_new, t_base, force=True)}
    kinds |= {r.kind for r in tensor_coder.plan_runs(t_new, b"", force=True)}
    assert kinds == {0, 1, 2, 3, 4}, f"the vectors should have runs of every kind, not only {kinds}"
    (out / "t_base.bin").write_bytes(t_base)
    (out / "t_new.bin").write_bytes(t_new)
    v2 = (delta.FORMAT_TENSOR,)
    (out / "t_delta.bin").write_bytes(delta.encode(t_new, t_base, versions=v2))
    (out / "t_blk.bin").write_bytes(delta.encode(t_new, t_base, block_log2=10, versions=v2))
    (out / "t_full.bin").write_bytes(delta.encode(t_new, b"", block_log2=10, versions=v2))
    for name in ("t_delta.bin", "t_blk.bin", "t_full.bin"):
        stream = (out / name).read_bytes()
        assert stream[2] == delta.FORMAT_TENSOR
        assert delta.decode(stream, t_base if name != "t_full.bin" else b"") == t_new
        print(f"{name}: {len(stream)} bytes for {len(t_new)}")
    modes: set[bool] = set()
    for name, base, log2 in (
        ("t3_delta.bin", t_base, 15),
        ("t3_blk.bin", t_base, 10),
        ("t3_full.bin", b"", 10),
    ):
        stream = table_stream(t_new, base, log2, modes)
        (out / name).write_bytes(stream)
        print(f"{name}: {len(stream)} bytes for {len(t_new)}")
    assert modes == {False, True}, f"exact and bucketed tables expected, got {modes}"
    literal_pair = make_literal_pair()
    (out / "t4_new.bin").write_bytes(literal_pair[1])
    for name, pair, log2 in (
        ("t4_delta.bin", literal_pair, 15),
        ("t4_blk.bin", literal_pair, 10),
        ("t4_full.bin", (b"", t_new), 10),
    ):
        stream = literal_stream(pair[1], pair[0], log2)
        (out / name).write_bytes(stream)
        print(f"{name}: {len(stream)} bytes for {len(pair[1])}")
    classes: set[int] = set()
    for name, pair, log2 in (
        ("t5_delta.bin", literal_pair, 15),
        ("t5_blk.bin", literal_pair, 10),
        ("t5_full.bin", (b"", t_new), 10),
    ):
        stream = literal_stream(pair[1], pair[0], log2, delta.FORMAT_NUMBERS, classes)
        (out / name).write_bytes(stream)
        print(f"{name}: {len(stream)} bytes for {len(pair[1])}")
    assert classes >= {0, 4, 8, 16, 17}, f"numbers of every class and two-step ones expected, got {classes}"
    for name, pair, log2 in (
        ("t6_delta.bin", literal_pair, 15),
        ("t6_blk.bin", literal_pair, 10),
        ("t6_full.bin", (b"", t_new), 10),
    ):
        stream = literal_stream(pair[1], pair[0], log2, delta.FORMAT_SYMBOLS)
        (out / name).write_bytes(stream)
        print(f"{name}: {len(stream)} bytes for {len(pair[1])}")


def literal_stream(
    new: bytes,
    base: bytes,
    block_log2: int,
    version: int = delta.FORMAT_LAST,
    classes: set[int] | None = None,
) -> bytes:
    """`new` in format version 4 (or 5): table_stream's runs plus literal runs, with at least one run that
    reuses its block's table (kind 7), checked to decode; version 5 adds to `classes` the first bit count
    of each ladder class its numbers use, and 17 for a number wider than 17 bits (two equal-chance steps)."""
    parser = _Parser(new, base)
    runs = delta.literal_runs(parser, block_log2, tensor_coder.plan_runs(new, base, force=True, tables=True))
    assert any(r.kind == tensor_coder.TABLE_LAST for r in runs), "literal runs expected"
    stream, _ = delta._encode_stream(parser, block_log2, 4, version, runs)
    kinds: list[int] = []
    plain_tree, plain_bit = Decoder.tree, Decoder.bit

    def spy(dec: Decoder, probs: list[int], bits: int, move_bits: int = 0) -> int:
        value = plain_tree(dec, probs, bits, move_bits)
        if bits == tensor_coder.KIND_BITS:
            kinds.append(value)
        return value

    def spy_bit(dec: Decoder, probs: list[int], index: int, move_bits: int = 0) -> int:
        bit = plain_bit(dec, probs, index, move_bits)
        escape = index - LADDER_ESCAPES
        if classes is not None and len(probs) == NUMBER_PROBS and 0 <= escape < 3 and not bit:
            classes.add(LADDER_FIRST[escape])  # the class a ladder number stopped at
        return bit

    plain_number = rangecoder.decode_number

    def spy_number(dec: Decoder, probs: list[int]) -> int:
        value = plain_number(dec, probs)
        if classes is not None and value.bit_length() > 17:
            classes.add(17)
        if classes is not None and value.bit_length() >= 16:
            classes.add(16)  # the last class has no escape bit of 0
        return value

    Decoder.tree = spy  # type: ignore[method-assign,assignment]
    Decoder.bit = spy_bit  # type: ignore[method-assign,assignment]
    modules = (delta, tensor_coder, table_coder)
    numbers = [(m, m.decode_number if m is not delta else m._decode_number) for m in modules]
    for module, _ in numbers:
        setattr(module, "_decode_number" if module is delta else "decode_number", spy_number)
    try:
        assert delta.decode(stream, base) == new
    finally:
        Decoder.tree = plain_tree  # type: ignore[method-assign]
        Decoder.bit = plain_bit  # type: ignore[method-assign]
        for module, plain in numbers:
            setattr(module, "_decode_number" if module is delta else "decode_number", plain)
    assert tensor_coder.TABLE_LAST in kinds, "a run reusing its block's table expected"
    assert stream[2] == version
    return stream


def table_stream(new: bytes, base: bytes, block_log2: int, modes: set[bool]) -> bytes:
    """`new` in format version 3 with a table run for every weight tensor (kind 6 with a base, else 5),
    checked to decode; adds to `modes` whether its tables are bucketed (True) or exact (False)."""
    runs = tensor_coder.plan_runs(new, base, force=True, tables=True)
    assert {r.kind for r in runs} >= ({6} if base else {5}), "diff table runs with a base, plain without"
    stream, _ = delta._encode_stream(_Parser(new, base), block_log2, 4, delta.FORMAT_TABLE, runs)
    plain_decode_table = table_coder.decode_table

    def spy(dec: Decoder, probs: list[int], count_bits: int) -> list[int]:
        modes.add(count_bits == table_coder.BUCKET_COUNT_BITS)
        return plain_decode_table(dec, probs, count_bits)

    table_coder.decode_table = spy
    try:
        assert delta.decode(stream, base) == new
    finally:
        table_coder.decode_table = plain_decode_table
    return stream


if __name__ == "__main__":
    main()
