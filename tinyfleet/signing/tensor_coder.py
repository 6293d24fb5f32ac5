"""Weight runs of the tinyfleet delta format version 2 (docs/PROTOCOL.md 5.3): int8 weight tensors coded
with adaptive models fitted to int8 weights instead of the byte-oriented literal coder.

Measured on retrained models (bench/delta.py), the weights of a layer are close to independent draws from
one smooth distribution: contexts on the previous value, the row, the column (the same position one row
up) or a per-row scale class all cost more than they gain. What pays is coding each value by its magnitude
class (bit length of |v|, 0..8) through a small adaptive tree, a sign bit, and the bits below the top one
through a tree per class, all adapting one step slower than the literal coder. A layer fine-tuned from
the base is coded as its differences from the base tensor (a diff run), so an unchanged weight costs a
fraction of a bit and a nudged one a few.

The encoder finds the int8 weight buffers with the bounds-checked flatbuffer reader and picks, per
tensor, a plain run, a diff run against the base tensor of the same name and size, or none (left to the
LZ/base-copy coder, best for tensors that are mostly unchanged).
"""

from __future__ import annotations

import math
import struct
from collections import Counter
from dataclasses import dataclass

from tinyfleet.signing import table_coder
from tinyfleet.signing._flatbuf import FlatBuffer, Table
from tinyfleet.signing.errors import InvalidModelError
from tinyfleet.signing.rangecoder import (
    MASK32,
    NUMBER_PROBS,
    PROB_INIT,
    Decoder,
    Encoder,
    NumberModel,
    decode_number,
    encode_number,
    unzigzag,
    zigzag,
)

TENSOR_TYPE_INT8 = 9
TENSOR_TYPE_INT32 = 2
MIN_WORDS = 4  # int32 / float32 vectors shorter than this stay with the LZ coder
MIN_RUN = 64  # smaller tensors are not worth a run's header
EXP_TREE_BITS = 4  # magnitude class 0..8
MANT_PROBS = 256  # class e uses entries 2**(e-1) - e + prefix - 1 (at most 246)
PLAIN, DIFF, WORDS, WORDS_DELTA, PRODUCT = 0, 1, 2, 3, 4  # run kinds; PLAIN and DIFF are also table sets
TABLE_PLAIN, TABLE_DIFF = 5, 6  # format version 3: PLAIN and DIFF coded with a static table (table_coder)
TABLE_LAST = 7  # format version 4: bytes coded with the block's last table (the encoder's literal runs)
WORD_KINDS = (WORDS, WORDS_DELTA, PRODUCT)
DIFF_KINDS = (DIFF, TABLE_DIFF)
TABLE_KINDS = (TABLE_PLAIN, TABLE_DIFF)
KIND_BITS = 3
TABLE_MARGIN = 0.1  # a table run is chosen up to 10% larger than binary coding: it decodes ~8x faster
UNCHANGED_SHARE = 0.5  # a tensor with at least this share of bytes equal to its base one is left to LZ


@dataclass(frozen=True)
class WeightTensor:
    start: int
    length: int
    name: str


@dataclass(frozen=True)
class WeightRun:
    """Bytes start..start+length of the new model coded as a run of `kind`: int8 weights (PLAIN), their
    differences from the base at disp = base offset - start (DIFF), or 32-bit little-endian words (int32
    biases, float32 quantization scales) as signed numbers (WORDS) or as differences from the previous
    word of the run (WORDS_DELTA), or float32 words as differences from the product of the float32
    `disp` bytes earlier in the output and `factor` (PRODUCT: a bias scale is input scale x weight scale).
    """

    start: int
    length: int
    disp: int | None
    kind: int = PLAIN
    factor: int = 0


class WeightModels:
    """Weight tables (plain values, differences) and a number table for words; the C decoder keeps them
    as uint16 (1,816 bytes)."""

    def __init__(self) -> None:
        self.kind = [PROB_INIT] * (1 << KIND_BITS)  # tree: the run kind
        self.word: NumberModel = [PROB_INIT] * NUMBER_PROBS
        self.exp = [[PROB_INIT] * (1 << EXP_TREE_BITS) for _ in range(2)]
        self.sign = [[PROB_INIT] * 16 for _ in range(2)]
        self.mant = [[PROB_INIT] * MANT_PROBS for _ in range(2)]


def _to_int8(byte: int) -> int:
    return byte - 256 if byte >= 128 else byte


def encode_value(enc: Encoder, models: WeightModels, table: int, value: int, move_bits: int) -> None:
    """`value` in -128..127: its magnitude class, its sign, then the bits below the class's top bit."""
    mag = abs(value)
    cls = mag.bit_length()
    enc.tree(models.exp[table], EXP_TREE_BITS, cls, move_bits)
    if cls == 0:
        return
    enc.bit(models.sign[table], cls, 1 if value < 0 else 0, move_bits)
    prefix, offset = 1, (1 << (cls - 1)) - cls - 1
    for shift in range(cls - 2, -1, -1):
        bit = (mag >> shift) & 1
        enc.bit(models.mant[table], offset + prefix, bit, move_bits)
        prefix = (prefix << 1) | bit


def decode_value(dec: Decoder, models: WeightModels, table: int, move_bits: int) -> int:
    """Inverse of encode_value. A corrupt stream may code magnitudes up to 255: the byte is taken mod 256."""
    cls = dec.tree(models.exp[table], EXP_TREE_BITS, move_bits)
    if cls == 0:
        return 0
    if cls > 8:
        raise ValueError("weight magnitude class above 8")
    negative = dec.bit(models.sign[table], cls, move_bits)
    prefix, offset = 1, (1 << (cls - 1)) - cls - 1
    for _ in range(cls - 1):
        prefix = (prefix << 1) | dec.bit(models.mant[table], offset + prefix, move_bits)
    return -prefix if negative else prefix


def run_values(new: bytes, base: bytes, run: WeightRun, start: int, end: int) -> list[int]:
    """The int8 values a run codes over new[start:end]: the weights, or their differences from the base."""
    if run.disp is None:
        return [_to_int8(b) for b in new[start:end]]
    return [_to_int8((new[i] - base[i + run.disp]) & 0xFF) for i in range(start, end)]


def _normal(bits: int) -> bool:
    return 0 < (bits >> 23) & 0xFF < 255


def product(a: int, factor: int) -> int:
    """The float32 product of two float32 bit patterns, rounded once (what C's a * b gives); 0 unless
    both and the result are normal numbers, so NaN and subnormal handling never matters."""
    if not (_normal(a) and _normal(factor)):
        return 0
    x = struct.unpack("<f", a.to_bytes(4, "little"))[0] * struct.unpack("<f", factor.to_bytes(4, "little"))[0]
    try:
        bits = int.from_bytes(struct.pack("<f", x), "little")  # the double product is exact: one rounding
    except OverflowError:
        return 0
    return bits if _normal(bits) else 0


def _prediction(kind: int, prev: int, data: bytes | bytearray, at: int, factor: int) -> int:
    if kind == WORDS_DELTA:
        return prev
    if kind == PRODUCT:
        return product(int.from_bytes(data[at : at + 4], "little"), factor)
    return 0


def encode_words(
    enc: Encoder, models: WeightModels, run: WeightRun, new: bytes, start: int, stop: int
) -> None:
    prev = 0
    for i in range(start, stop, 4):
        word = int.from_bytes(new[i : i + 4], "little")
        value = (word - _prediction(run.kind, prev, new, i - (run.disp or 0), run.factor)) & MASK32
        encode_number(enc, models.word, zigzag(value - (1 << 32) if value >> 31 else value))
        prev = word


def decode_words(
    dec: Decoder, models: WeightModels, kind: int, count: int, out: bytearray, dist: int, factor: int
) -> None:
    prev = 0
    for _ in range(count):
        value = unzigzag(decode_number(dec, models.word))
        word = (value + _prediction(kind, prev, out, len(out) - dist, factor)) & MASK32
        out += word.to_bytes(4, "little")
        prev = word


def find_products(model: bytes) -> dict[int, tuple[int, int]]:
    """Bias scale vectors that are input scale x weight scale: {their start: (weight scales' start, input
    scale bits)}, when the weight scales come earlier in the file (a decoder reads them back)."""
    found: dict[int, tuple[int, int]] = {}
    try:
        graphs = FlatBuffer(model).root().table_vector(2, "subgraphs")
        for graph in graphs:
            tensors = graph.table_vector(0, "tensors")

            def scales(i: int, tensors: list[Table] = tensors) -> tuple[int, int] | None:
                quant = tensors[i].table(4, "quantization") if 0 <= i < len(tensors) else None
                return quant.vector(2, 4, "scales") if quant is not None else None

            for op in graph.table_vector(3, "operators"):
                inputs = op.int_vector(1, "operator inputs")
                if len(inputs) != 3:
                    continue
                x, w, b = (scales(i) for i in inputs)
                if (
                    x is not None
                    and w is not None
                    and b is not None
                    and x[1] == 1
                    and w[1] == b[1]
                    and w[0] < b[0]
                ):
                    found[b[0]] = (w[0], int.from_bytes(model[x[0] : x[0] + 4], "little"))
    except (InvalidModelError, IndexError):
        return {}
    return found


def _word_bits(new: bytes, run: WeightRun) -> int:
    bits, prev = 0, 0
    for i in range(run.start, run.start + run.length, 4):
        word = int.from_bytes(new[i : i + 4], "little")
        value = (word - _prediction(run.kind, prev, new, i - (run.disp or 0), run.factor)) & MASK32
        bits += zigzag(value - (1 << 32) if value >> 31 else value).bit_length() + 3
        prev = word
    return bits


def find_word_vectors(model: bytes) -> list[tuple[int, int]]:
    """(start, bytes) of the int32 constant buffers and float32 quantization scale vectors, file order."""
    try:
        root = FlatBuffer(model).root()
        if model[4:8] != b"TFL3":
            return []
        buffers = root.table_vector(4, "buffers")
        found: dict[int, int] = {}
        for graph in root.table_vector(2, "subgraphs"):
            for tensor in graph.table_vector(0, "tensors"):
                index = tensor.u32(2)
                if tensor.u8(1) == TENSOR_TYPE_INT32 and index < len(buffers):
                    vec = buffers[index].vector(0, 1, "buffer data")
                    if vec is not None and vec[1] >= 4 * MIN_WORDS and vec[1] % 4 == 0:
                        found[vec[0]] = vec[1]
                quant = tensor.table(4, "quantization")
                scales = quant.vector(2, 4, "scales") if quant is not None else None
                if scales is not None and scales[1] >= MIN_WORDS:
                    found[scales[0]] = 4 * scales[1]
    except (InvalidModelError, IndexError):
        return []
    return sorted(found.items())


def find_weight_tensors(model: bytes) -> list[WeightTensor]:
    """The int8 constant tensors of a .tflite model, in file order; [] when it is not a parseable model."""
    try:
        root = FlatBuffer(model).root()
        if model[4:8] != b"TFL3":
            return []
        buffers = root.table_vector(4, "buffers")
        found: dict[int, WeightTensor] = {}
        for graph in root.table_vector(2, "subgraphs"):
            for tensor in graph.table_vector(0, "tensors"):
                index = tensor.u32(2)
                if tensor.u8(1) != TENSOR_TYPE_INT8 or index >= len(buffers):
                    continue
                vec = buffers[index].vector(0, 1, "buffer data")
                if vec is not None and vec[1] >= MIN_RUN:
                    found[vec[0]] = WeightTensor(vec[0], vec[1], tensor.string(3, "tensor name") or "")
    except (InvalidModelError, IndexError):
        return []
    return [found[k] for k in sorted(found)]


def _estimated_bits(values: list[int]) -> float:
    """Empirical order-0 entropy plus what an adaptive model pays to learn the distinct values."""
    counts = Counter(values)
    n = len(values)
    return -sum(c * math.log2(c / n) for c in counts.values()) + 6.0 * len(counts)


def plan_runs(
    new: bytes, base: bytes, force: bool = False, tables: bool = False, speed: bool = False
) -> list[WeightRun]:
    """The weight runs the encoder emits: per int8 tensor of `new`, a plain run, a diff run against the
    base tensor with the same name and size, or nothing (mostly unchanged: the LZ coder copies it).
    force: a run for every tensor (diff when it has a base tensor), to exercise decoders.
    tables (format version 3): each weight run coded with a static table when that is at most
    TABLE_MARGIN larger than binary coding (with force: always); with speed, tensors that binary coding
    would leave to the LZ coder's literals are table runs too (about the same size when they are
    literals, about 8x faster to decode; not when base copies would take them)."""
    by_name = {(t.name, t.length): t for t in find_weight_tensors(base)} if base else {}
    runs = []
    for t in find_weight_tensors(new):
        plain = WeightRun(t.start, t.length, None)
        options = [(_estimated_bits(run_values(new, base, plain, t.start, t.start + t.length)), plain)]
        match = by_name.get((t.name, t.length))
        if match is not None:
            same = sum(1 for i in range(t.length) if new[t.start + i] == base[match.start + i])
            if same >= UNCHANGED_SHARE * t.length and not force:
                continue
            diff = WeightRun(t.start, t.length, match.start - t.start, DIFF)
            options.append((_estimated_bits(run_values(new, base, diff, t.start, t.start + t.length)), diff))
        bits, best = min(options, key=lambda o: o[0]) if not force else options[-1]
        literal = bits >= 7.9 * t.length  # byte coding with base matches does as well, but slowly
        if tables:
            values = run_values(new, base, best, t.start, t.start + t.length)
            if force or literal or table_coder.estimated_bits(values) <= bits * (1 + TABLE_MARGIN):
                best = WeightRun(best.start, best.length, best.disp, best.kind + TABLE_PLAIN)
        if not literal or force or speed:
            runs.append(best)
    products = find_products(new)
    for start, length in find_word_vectors(new):
        data = new[start : start + length]
        if not force and base.find(data) >= 0:
            continue  # unchanged: one base copy
        choices = [WeightRun(start, length, None, kind) for kind in (WORDS, WORDS_DELTA)]
        if start in products:
            choices.append(WeightRun(start, length, start - products[start][0], PRODUCT, products[start][1]))
        costs = [_word_bits(new, run) for run in choices]
        pick = min(range(len(choices)), key=lambda k: costs[k])
        if force:  # a product run when there is one, else plain and delta words in turn
            pick = 2 if len(choices) == 3 else len(runs) % 2
        if costs[pick] < 30 * length // 4 or force:
            runs.append(choices[pick])
    runs.sort(key=lambda r: r.start)
    return [r for i, r in enumerate(runs) if i == 0 or runs[i - 1].start + runs[i - 1].length <= r.start]
