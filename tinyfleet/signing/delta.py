"""tinyfleet delta format (docs/PROTOCOL.md section 5): encoder, reference decoder, and the choice of
the smallest payload (delta, compressed full model, or raw).

A model update is coded as ops over the new model's bytes: copy from the base model (the device's active
slot), copy from output already written (the target slot), or a literal coded as its difference from
the base byte at the current alignment, so a retrained weight that moved by a few steps costs a few bits.
Everything is entropy-coded with the adaptive binary range coder in `rangecoder`. The output is cut into
independent blocks (models and alignment reset) so a device can resume after a reboot at a block start
without keeping decoder state in flash. Format version 2 adds weight runs (`tensor_coder`): a .tflite
model's int8 weight tensors coded with models fitted to weights; version 3 adds table runs
(`table_coder`): weights one byte per symbol with a static table, several times faster for a device to
decode; version 4 adds literal runs (run kind 7, `literal_runs`): stretches of what the LZ coder leaves
as literals coded a table symbol per byte, later runs of a block reusing its last table; version 5 codes
every number with a ladder of bit-count classes and equal-chance low bits (`rangecoder`: fewer decisions
for the device, no larger); version 6 codes literals (two nibbles) and numbers' bit counts as adaptive
frequency symbols (`FreqModel`: a division and a short search each instead of up to 8 binary decisions).
By default the encoder makes the plans of versions 1, 3 and 4 as version 5 and version 6 streams and keeps
the fastest to decode (an estimate of the Cortex-M4 instructions, `decode_cost`) of those within
SPEED_MARGIN of the smallest, or up to SPEED_CAP larger to meet SPEED_TARGET; decoders take all six
versions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from tinyfleet.signing import table_coder, tensor_coder
from tinyfleet.signing.delta_parser import BASE, NEW_MIN, OUT, REP_MIN, Op, _Parser
from tinyfleet.signing.delta_prices import Prices
from tinyfleet.signing.rangecoder import (
    NUMBER_INC,
    NUMBER_LOW_BITS,
    NUMBER_SYMBOLS,
    NUMBER_TREE_BITS,
    PROB_INIT,
    Decoder,
    Encoder,
    FreqModel,
    NumberModel,
)
from tinyfleet.signing.rangecoder import decode_number as _decode_number
from tinyfleet.signing.rangecoder import encode_number as _encode_number
from tinyfleet.signing.rangecoder import unzigzag as _unzigzag
from tinyfleet.signing.rangecoder import zigzag as _zigzag
from tinyfleet.signing.tensor_coder import WeightModels, WeightRun

MAGIC = b"TD"
FORMAT_VERSION = 1
FORMAT_TENSOR = 2  # version 1 plus weight runs
FORMAT_TABLE = 3  # version 2 plus table runs (weights one byte per symbol, fast to decode)
FORMAT_LAST = 4  # version 3 plus runs that reuse the block's last table (literal bytes a symbol each)
FORMAT_NUMBERS = 5  # version 4 with cheaper numbers (a ladder of bit-count classes, equal-chance low bits)
FORMAT_SYMBOLS = 6  # version 5 with literals and numbers as adaptive frequency symbols (a division each)
FORMATS = (FORMAT_VERSION, FORMAT_TENSOR, FORMAT_TABLE, FORMAT_LAST, FORMAT_NUMBERS, FORMAT_SYMBOLS)
# what encode tries unless told: the plans of versions 1, 3 and 4, made as version 5 and 6 streams
DEFAULT_VERSIONS = (FORMAT_VERSION, FORMAT_TABLE, FORMAT_LAST, FORMAT_NUMBERS, FORMAT_SYMBOLS)
FLAG_HAS_BASE = 1
DEFAULT_BLOCK_LOG2 = 15  # 32 KiB of output per independent block
MIN_BLOCK_LOG2, MAX_BLOCK_LOG2 = 10, 20
SPEED_MARGIN = 0.03  # a stream up to 3% larger than the smallest is kept if it decodes faster
MOVE_BITS_CHOICES = (3, 4, 5)  # adaptation rates the encoder tries (fast suits small models)
REPS = 3

ENCODING_RAW = 0
ENCODING_COMPRESSED = 1
ENCODING_DELTA = 2


class DeltaError(ValueError):
    """A delta stream that is malformed or does not fit its base."""


LITERAL_INC = 2  # version 6 literals: what a coded nibble gains (smallest of 2-12 on hello_world's)
NO_MATCH = 16  # the high nibble's context without a match byte


class _LiteralModels:
    """Format version 6 literals: the high nibble in the context of the match byte's high nibble (or
    NO_MATCH), then the low nibble in the context of the high one; 528 adaptive counts."""

    def __init__(self) -> None:
        self.high = [FreqModel(16, LITERAL_INC) for _ in range(NO_MATCH + 1)]
        self.low = [FreqModel(16, LITERAL_INC) for _ in range(16)]


Literals = list[list[int]] | _LiteralModels


class _Models:
    """Adaptive probabilities; the C decoder keeps the same arrays as uint16 (about 2.6 KiB). Version 6
    keeps frequency counts for literals and numbers in the same room."""

    def __init__(self, version: int = FORMAT_VERSION) -> None:
        self.is_match = [PROB_INIT] * 2
        self.is_rep = [PROB_INIT] * 2
        self.rep_which = [PROB_INIT] * 4
        self.is_out = [PROB_INIT] * 2
        self.is_tensor = [PROB_INIT] * 2  # version 2 only
        self.weights = WeightModels()
        self.literal: Literals
        self.rep_len: NumberModel
        self.new_len: NumberModel
        self.disp: NumberModel
        self.dist: NumberModel
        if version >= FORMAT_SYMBOLS:
            self.literal = _LiteralModels()
            self.rep_len, self.new_len, self.disp, self.dist, self.weights.word = (
                FreqModel(NUMBER_SYMBOLS, NUMBER_INC) for _ in range(5)
            )
        else:
            self.literal = [[PROB_INIT] * 256 for _ in range(3)]
            number_size = (1 << NUMBER_TREE_BITS) + 33 * (1 << NUMBER_LOW_BITS)
            self.rep_len = [PROB_INIT] * number_size
            self.new_len = [PROB_INIT] * number_size
            self.disp = [PROB_INIT] * number_size
            self.dist = [PROB_INIT] * number_size
        # format version 4: the block's last table (bucketed?, frequencies; the decoder keeps it cumulative)
        self.table: tuple[bool, list[int]] | None = None


def _match_byte(base: bytes, pos: int, reps: list[tuple[int, int]]) -> int | None:
    """The base byte at the latest base alignment, the context a literal is coded in (None: no base)."""
    src = pos + next((v for kind, v in reps if kind == BASE), 0)
    return base[src] if 0 <= src < len(base) else None


def _encode_literal(enc: Encoder, probs: Literals, byte: int, match: int | None) -> None:
    """A literal, bit by bit. While its bits agree with the match byte's, each is coded in the context
    of the match bit (probs[1] or probs[2]): a byte kept from the base, or a weight pruned to zero, costs
    little; after the first disagreement, or with no base, the plain tree probs[0] is used. Version 6:
    two adaptive nibbles (_LiteralModels), two divisions instead of eight decisions."""
    if isinstance(probs, _LiteralModels):
        enc.freq(probs.high[NO_MATCH if match is None else match >> 4], byte >> 4)
        enc.freq(probs.low[byte >> 4], byte & 15)
        return
    node, matching = 1, match is not None
    for shift in range(7, -1, -1):
        bit = (byte >> shift) & 1
        if matching:
            assert match is not None
            match_bit = (match >> shift) & 1
            enc.bit(probs[1 + match_bit], node, bit)
            matching = bit == match_bit
        else:
            enc.bit(probs[0], node, bit)
        node = (node << 1) | bit


def _decode_literal(dec: Decoder, probs: Literals, match: int | None) -> int:
    if isinstance(probs, _LiteralModels):
        high = dec.freq(probs.high[NO_MATCH if match is None else match >> 4])
        return high << 4 | dec.freq(probs.low[high])
    node, matching = 1, match is not None
    for shift in range(7, -1, -1):
        if matching:
            assert match is not None
            match_bit = (match >> shift) & 1
            bit = dec.bit(probs[1 + match_bit], node)
            matching = bit == match_bit
        else:
            bit = dec.bit(probs[0], node)
        node = (node << 1) | bit
    return node & 0xFF


def _put_varint(out: bytearray, value: int) -> None:
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _get_varint(data: bytes, offset: int) -> tuple[int, int]:
    value = 0
    for i in range(5):
        if offset + i >= len(data):
            raise DeltaError("delta stream truncated inside a length")
        byte = data[offset + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if value > 0xFFFFFFFF:
                break
            return value, offset + i + 1
    raise DeltaError("delta length field out of range")


def _encode_weight_run(
    enc: Encoder, models: _Models, reps: list[tuple[int, int]], prev_kind: int, run: WeightRun, span: range
) -> list[tuple[int, int]]:
    """One weight run over `span` of the output (part of `run` when it crosses a block end)."""
    enc.bit(models.is_match, prev_kind, 1)
    enc.bit(models.is_rep, prev_kind, 0)
    enc.bit(models.is_tensor, prev_kind, 1)
    enc.tree(models.weights.kind, tensor_coder.KIND_BITS, run.kind)
    if run.kind == tensor_coder.PRODUCT:
        assert run.disp is not None
        _encode_number(enc, models.dist, run.disp - 1)
        enc.direct_bits(run.factor, 32)
    if run.kind in tensor_coder.DIFF_KINDS:
        assert run.disp is not None
        align = next((v for kind, v in reps if kind == BASE), 0)
        _encode_number(enc, models.disp, _zigzag(run.disp - align))
        reps = [(BASE, run.disp), *reps[: REPS - 1]]
    words = run.kind in tensor_coder.WORD_KINDS
    _encode_number(enc, models.new_len, (len(span) // 4 if words else len(span)) - 1)
    return reps


def _group_table(
    new: bytes, base: bytes, runs: list[WeightRun], pos: int, end: int, probs: NumberModel
) -> tuple[bool, list[int]]:
    """The table of the literal runs from `pos` on, up to the next other table run or the block end: the
    first sends it, the others reuse it (format version 4)."""
    values: list[int] = []
    for run in runs:
        if run.start >= end or run.kind in tensor_coder.TABLE_KINDS:
            break
        if run.kind == tensor_coder.TABLE_LAST:
            stop = min(end, run.start + run.length)
            values += tensor_coder.run_values(new, base, run, max(pos, run.start), stop)
    return table_coder.plan_table(probs, values)


def _encode_block(
    parser: _Parser,
    start: int,
    end: int,
    move_bits: int,
    runs: list[WeightRun],
    version: int,
    literals: list[int] | None = None,
    script: list[Op] | None = None,
) -> tuple[bytes, Work]:
    """The block's coded bytes and the device's work for it (Work, priced by decode_cost); the positions of
    literals are added to `literals`. With a `script` the ops are the parser's plan (the cheapest at the
    models' prices), else its greedy choice (what versions 1-4 asked for alone make, the golden vectors);
    a non-empty script holds the ops of the block, in order, from a stream of the same plan and version
    at another adaptation rate (its parse is all but the same, and the parse is most of the encoder's
    time), an empty one gets the ops parsed here."""
    new, base = parser.new, parser.base
    n_copies = n_runs = 0
    enc = Encoder(move_bits)
    enc.ladder = version >= FORMAT_NUMBERS
    models = _Models(version)
    reps: list[tuple[int, int]] = [(BASE, 0)] * REPS
    pos, prev_kind = start, 0
    planned: list[Op] = []  # ops the parser chose that are not coded yet
    prices: Prices | None = None
    priced_at = start
    replay = script if script else None
    taken = 0

    def price() -> Prices:
        nonlocal prices, priced_at
        if prices is None or pos - priced_at >= REPRICE:
            prices, priced_at = Prices(models, enc.ladder, version >= FORMAT_TENSOR), pos
        return prices

    runs = [r for r in runs if r.start + r.length > start and r.start < end]
    while pos < end:
        while runs and runs[0].start + runs[0].length <= pos:
            runs.pop(0)
        run = runs[0] if runs else None
        stop = min(end, run.start + run.length) if run is not None else end
        if run is not None and run.kind in tensor_coder.WORD_KINDS:
            # whole words only: a word cut by the block end goes to the LZ coder
            stop = pos + (stop - pos) // 4 * 4 if (pos - run.start) % 4 == 0 else pos
        if run is not None and run.start <= pos < stop and run.kind == tensor_coder.TABLE_LAST:
            values = tensor_coder.run_values(new, base, run, pos, stop)
            send = models.table is None  # the first literal run of a group sends the group's table
            if send:
                models.table = _group_table(new, base, runs, pos, end, models.weights.word)
            kind = tensor_coder.TABLE_PLAIN if send else tensor_coder.TABLE_LAST
            header = WeightRun(pos, stop - pos, None, kind)
            _encode_weight_run(enc, models, reps, prev_kind, header, range(pos, stop))
            table_coder.encode_run(enc, models.weights.word, values, models.table, send)
            pos, prev_kind, n_runs = stop, 1, n_runs + 1
            planned, prices = [], None
            continue
        if run is not None and run.start <= pos < stop:
            span = range(pos, stop)
            reps = _encode_weight_run(enc, models, reps, prev_kind, run, span)
            if run.kind in tensor_coder.TABLE_KINDS:
                models.table = None  # a weight table: the next literal run sends its own
            if run.kind in tensor_coder.WORD_KINDS:
                tensor_coder.encode_words(enc, models.weights, run, new, pos, stop)
            elif run.kind in tensor_coder.TABLE_KINDS:
                values = tensor_coder.run_values(new, base, run, pos, stop)
                table_coder.encode_run(enc, models.weights.word, values)
            else:
                for value in tensor_coder.run_values(new, base, run, pos, stop):
                    tensor_coder.encode_value(enc, models.weights, run.kind, value, move_bits + 1)
            pos, prev_kind, n_runs = stop, 1, n_runs + 1
            planned, prices = [], None
            continue
        # copies stop where the next run starts
        lz_end = (
            min(end, run.start + run.length if run.start <= pos else run.start) if run is not None else end
        )
        if script is None:
            copy = parser.greedy(pos, lz_end, reps)
        elif replay is not None:
            copy = replay[taken]
            taken += 1
        else:
            if not planned:
                planned = parser.plan(pos, lz_end, reps, prev_kind, price)
            copy = planned.pop(0)
            script.append(copy)
        if copy is None:
            enc.bit(models.is_match, prev_kind, 0)
            _encode_literal(enc, models.literal, new[pos], _match_byte(base, pos, reps))
            if literals is not None:
                literals.append(pos)
            prev_kind = 0
            pos += 1
            continue
        enc.bit(models.is_match, prev_kind, 1)
        if copy.kind == "rep":
            enc.bit(models.is_rep, prev_kind, 1)
            enc.tree(models.rep_which, 2, copy.value)
            reps.insert(0, reps.pop(copy.value))
            _encode_number(enc, models.rep_len, copy.length - REP_MIN)
        else:
            enc.bit(models.is_rep, prev_kind, 0)
            if version >= FORMAT_TENSOR:
                enc.bit(models.is_tensor, prev_kind, 0)
            if copy.kind == "base":
                enc.bit(models.is_out, prev_kind, 0)
                align = next((v for kind, v in reps if kind == BASE), 0)
                _encode_number(enc, models.disp, _zigzag(copy.value - align))
                reps = [(BASE, copy.value), *reps[: REPS - 1]]
            else:
                enc.bit(models.is_out, prev_kind, 1)
                _encode_number(enc, models.dist, copy.value - 1)
                reps = [(OUT, copy.value), *reps[: REPS - 1]]
            _encode_number(enc, models.new_len, copy.length - NEW_MIN)
        pos += copy.length
        prev_kind = 1
        n_copies += 1
    bits = enc.decisions - enc.symbols - enc.directs - enc.freqs
    work = Work(
        bits, enc.directs, enc.symbols, n_copies, n_runs, enc.freqs, enc.steps, end - start, enc.calls
    )
    # The decoder reads zeros past the end of a block, so trailing zero bytes need not be sent.
    return enc.finish().rstrip(b"\x00"), work


REPRICE = 32  # output bytes between two snapshots of the models' prices for the parser

SPEED_TARGET = 60  # estimated decoder instructions per output byte the encoder aims at (issue 17)
SPEED_CAP = 0.45  # ... taking a stream up to this much larger than the smallest to get there (the 106 KB
# pruned pair: 43% since the priced parse made its smallest stream smaller, 4x faster; still below every
# peer. At 0.25 the stream kept was that smallest one, 159 instructions per output byte)


class Work(NamedTuple):
    """What a stream costs the decoder: adaptive bits, direct bits, table symbols and equal-chance steps
    (a division each), copy ops, runs, adaptive frequency symbols (version 6) and their search steps (the
    symbols' sum), output bytes, numbers of binary models (versions 1-5: each a call out of the decoder's
    op loop, with its state stored and reloaded)."""

    bits: int = 0
    directs: int = 0
    symbols: int = 0
    copies: int = 0
    runs: int = 0
    freqs: int = 0
    steps: int = 0
    out_bytes: int = 0
    calls: int = 0

    def __add__(self, other: object) -> Work:
        assert isinstance(other, Work)
        return Work(*(a + b for a, b in zip(self, other, strict=True)))


# Cortex-M4 instructions of the C decoder (bench/delta_m4.py) per unit of work, fitted by
# bench/delta_cost_fit.py on 462 candidate streams of the benchmark pairs, versions 5 and 6 (docs/
# BENCHMARKS.md, "Issue 17: the op loop in locals"; median error 3.1%, within 10% on 439): an adaptive bit
# with its share of the op, literal and number code around it, a direct bit (not fitted: few streams have
# any), a table symbol or equal-chance step (a division), a copy op (its numbers are counted apart), a
# run's header and set-up, an adaptive frequency symbol with its search (the steps' own price fitted to 0
# once the nibbles were searched from the nearer end), each output byte, a binary-model number's call
COSTS = Work(bits=26, directs=9, symbols=34, copies=152, runs=146, freqs=65, steps=0, out_bytes=5, calls=62)


def decode_cost(work: Work) -> int:
    """Estimated Cortex-M4 instructions of the C decoder for `work`."""
    return sum(c * w for c, w in zip(COSTS, work, strict=True))


def encode(
    new: bytes,
    base: bytes = b"",
    block_log2: int = DEFAULT_BLOCK_LOG2,
    versions: tuple[int, ...] = DEFAULT_VERSIONS,
) -> bytes:
    """A delta of `new` against `base`; with an empty base it is a plain compressed model.

    Tries each format version in `versions` (versions 2 and 3 only when `new` is a .tflite model with
    int8 weight tensors; version 4 with or without them) and each adaptation rate, and keeps the fastest
    to decode (fewest estimated decoder instructions, decode_cost) of the streams at most SPEED_MARGIN
    larger than the smallest, or a faster one up to SPEED_CAP larger when that one is too slow (choose).
    Version 3 is version 2 plus table runs, so version 2 is made only when asked for. With version 5
    or 6 asked for, the plans of versions 1, 3 and 4 are all made, each as a stream of each of those two
    versions asked for (PROTOCOL 5.8, 5.10), and no older stream.
    """
    made = candidates(new, base, block_log2, versions)
    if not {FORMAT_TABLE, FORMAT_LAST, FORMAT_NUMBERS, FORMAT_SYMBOLS} & set(versions):
        return min(made, key=lambda m: len(m[0]))[0]  # the first of the smallest: what versions 1-2 made
    return choose(made, len(new))


def candidates(
    new: bytes,
    base: bytes = b"",
    block_log2: int = DEFAULT_BLOCK_LOG2,
    versions: tuple[int, ...] = DEFAULT_VERSIONS,
) -> list[tuple[bytes, int]]:
    """Every stream `encode` chooses from, with its estimated decoder instructions (decode_cost)."""
    return [(stream, decode_cost(work)) for stream, work in candidate_work(new, base, block_log2, versions)]


def candidate_work(
    new: bytes,
    base: bytes = b"",
    block_log2: int = DEFAULT_BLOCK_LOG2,
    versions: tuple[int, ...] = DEFAULT_VERSIONS,
) -> list[tuple[bytes, Work]]:
    """The candidates' streams with the decoder's work each one takes (bench/delta_cost_fit.py)."""
    if not MIN_BLOCK_LOG2 <= block_log2 <= MAX_BLOCK_LOG2:
        raise ValueError(f"block size must be 2**{MIN_BLOCK_LOG2}..2**{MAX_BLOCK_LOG2}")
    if not new:
        raise ValueError("nothing to encode: the new model is empty")
    numbers = bool({FORMAT_NUMBERS, FORMAT_SYMBOLS} & set(versions))
    if numbers:
        versions = (*versions, FORMAT_VERSION, FORMAT_TABLE, FORMAT_LAST)
    parser = _Parser(new, base)
    rates = MOVE_BITS_CHOICES if len(new) <= 64 * 1024 else MOVE_BITS_CHOICES[1:]
    plans: list[tuple[int, list[WeightRun]]] = []
    if FORMAT_VERSION in versions:
        plans.append((FORMAT_VERSION, []))
    table_plans: list[list[WeightRun]] = []
    for version in (FORMAT_TENSOR, FORMAT_TABLE):
        if version not in versions and not (version == FORMAT_TABLE and FORMAT_LAST in versions):
            continue
        # the run choice is estimated, so both the estimate's plan and runs for every tensor are tried
        tables = version == FORMAT_TABLE
        for force, speed in ((False, False), (True, False), (False, True))[: 3 if tables else 2]:
            if tables and force and FORMAT_LAST in versions:
                continue  # with version 4 competing, the forced table plan was never the stream kept
            runs = tensor_coder.plan_runs(new, base, force=force, tables=tables, speed=speed)
            if tables and runs not in table_plans:
                table_plans.append(runs)
            if runs and version in versions and all((version, runs) != p for p in plans):
                plans.append((version, runs))
    if FORMAT_LAST in versions:
        # version 4: version 3's estimated plan (or none) with the literals left between its runs as literal
        # runs (on the benchmark pairs the other two plans never made the stream kept). With version 5,
        # small models also try tighter stretches (LITERAL_PLANS): fewer copied bytes swallowed, so a
        # stream within the size margin that still turns most literals into table symbols
        runs = table_plans[0] if table_plans else []
        literals: list[int] = []
        for gap, minimum in LITERAL_PLANS if numbers and len(new) <= 64 * 1024 else LITERAL_PLANS[:1]:
            planned = literal_runs(parser, block_log2, runs, gap, minimum, literals, numbers)
            if all((FORMAT_LAST, planned) != p for p in plans):
                plans.append((FORMAT_LAST, planned))
    if not plans:
        raise ValueError("format versions 2 and 3 need a .tflite model with int8 weight tensors")
    if numbers:
        unique: list[list[WeightRun]] = []
        for _, runs in plans:
            if runs not in unique:
                unique.append(runs)
        made = tuple(v for v in (FORMAT_NUMBERS, FORMAT_SYMBOLS) if v in versions)
        plans = [(version, runs) for runs in unique for version in made]
    streams: list[tuple[bytes, Work]] = []
    for version, runs in plans:
        # versions 5 and 6: the planned parse, one per block shared by the adaptation rates
        scripts: dict[int, list[Op]] | None = {} if numbers else None
        streams += [
            _encode_stream(parser, block_log2, rate, version, runs, scripts=scripts) for rate in rates
        ]
    return streams


def choose(made: list[tuple[bytes, int]], out_bytes: int) -> bytes:
    """Of the candidate (stream, estimated decoder instructions) pairs: the fastest to decode of those at
    most SPEED_MARGIN larger than the smallest; if that one takes more than SPEED_TARGET instructions per
    output byte, the smallest stream that does not, provided it is at most SPEED_CAP larger than the
    smallest (on the 106 KB pruned pair: +43% bytes, 4x faster, still below every peer)."""
    smallest = min(len(m[0]) for m in made)
    near = [m for m in made if len(m[0]) <= smallest * (1 + SPEED_MARGIN)]
    fastest = min(near, key=lambda m: (m[1], len(m[0])))
    if fastest[1] > SPEED_TARGET * out_bytes:
        meets = [
            m for m in made if m[1] <= SPEED_TARGET * out_bytes and len(m[0]) <= smallest * (1 + SPEED_CAP)
        ]
        if meets:
            return min(meets, key=lambda m: (len(m[0]), m[1]))[0]
    return fastest[0]


LITERAL_GAP = 8  # literals at most this far apart share a literal run (the bytes between, copies before)
LITERAL_MIN = 4  # fewer literals than this in a stretch stay binary-coded
# (gap, minimum) of the literal-run plans tried: the first for every model, the others for version 5 and
# models of at most 64 KiB (each is a stream more to encode). Tighter stretches swallow fewer copied bytes,
# whose table symbols cost more than the copy did (bench/delta_m4.py: within the size margin where (8, 4)
# is not); (6, 8) and (6, 6) made hello_world_int8.1 -> .2's only streams below zstd's 1,018 B that decode
# at 60 M4 instructions per output byte or fewer (995 B at 58.7, 1,013 B at 56.4; docs/BENCHMARKS.md)
LITERAL_PLANS = ((LITERAL_GAP, LITERAL_MIN), (4, 4), (1, 8), (6, 8), (6, 6))


def literal_runs(
    parser: _Parser,
    block_log2: int,
    runs: list[WeightRun],
    gap: int = LITERAL_GAP,
    minimum: int = LITERAL_MIN,
    literals: list[int] | None = None,
    priced: bool = False,
) -> list[WeightRun]:
    """Format version 4: `runs` plus a literal run (TABLE_LAST) over each stretch of the literals that
    the LZ coder emits around them (at most `gap` bytes apart, at least `minimum` of them): bytes coded a
    table symbol each (about 45 Cortex-M4 instructions) instead of about 9 adaptive binary decisions
    (about 250). `literals`: where the LZ coder emits them with `runs`, found here when empty (and kept
    there for the next call with the same runs); `priced`: by the parse that weighs ops at the models'
    prices (_encode_block), else the greedy one."""
    if literals is None:
        literals = []
    if not literals:
        _encode_stream(parser, block_log2, 4, FORMAT_TABLE, runs, literals, {} if priced else None)
    covered = bytearray(len(parser.new) + 1)
    for run in runs:
        covered[run.start : run.start + run.length] = b"\x01" * run.length
    block = 1 << block_log2
    found: list[WeightRun] = []
    first = last = count = -1
    for pos in [*literals, -1]:
        if (
            count > 0
            and pos >= 0
            and pos - last <= gap
            and pos // block == last // block
            and not any(covered[last:pos])
        ):
            last, count = pos, count + 1
            continue
        if count >= minimum:
            found.append(WeightRun(first, last + 1 - first, None, tensor_coder.TABLE_LAST))
        first = last = pos
        count = 1
    return sorted([*runs, *found], key=lambda r: r.start)


def _encode_stream(
    parser: _Parser,
    block_log2: int,
    move_bits: int,
    version: int = FORMAT_VERSION,
    runs: list[WeightRun] | None = None,
    literals: list[int] | None = None,
    scripts: dict[int, list[Op]] | None = None,
) -> tuple[bytes, Work]:
    new, base = parser.new, parser.base
    work = Work()
    stream = bytearray(MAGIC)
    stream += bytes((version, FLAG_HAS_BASE if base else 0, block_log2, move_bits))
    _put_varint(stream, len(new))
    _put_varint(stream, len(base))
    block = 1 << block_log2
    for start in range(0, len(new), block):
        end = min(len(new), start + block)
        script = None if scripts is None else scripts.setdefault(start, [])
        coded, block_work = _encode_block(
            parser, start, end, move_bits, runs or [], version, literals, script
        )
        work += block_work
        _put_varint(stream, len(coded))
        stream += coded
    return bytes(stream), work


@dataclass(frozen=True)
class Header:
    version: int
    block_log2: int
    move_bits: int
    output_size: int
    base_size: int
    has_base: bool
    size: int  # bytes of the header itself


def parse_header(stream: bytes) -> Header:
    if len(stream) < 6:
        raise DeltaError("delta stream shorter than its header")
    if stream[:2] != MAGIC:
        raise DeltaError("not a tinyfleet delta stream (bad magic)")
    version, flags, block_log2, move_bits = stream[2], stream[3], stream[4], stream[5]
    if version not in FORMATS or flags & ~FLAG_HAS_BASE:
        raise DeltaError(f"unsupported delta format version {version} or flags {flags:#x}")
    if not MIN_BLOCK_LOG2 <= block_log2 <= MAX_BLOCK_LOG2 or move_bits not in MOVE_BITS_CHOICES:
        raise DeltaError("delta block size or adaptation rate out of range")
    output_size, offset = _get_varint(stream, 6)
    base_size, offset = _get_varint(stream, offset)
    if output_size == 0 or bool(flags & FLAG_HAS_BASE) != (base_size > 0):
        raise DeltaError("delta header out of range")
    return Header(version, block_log2, move_bits, output_size, base_size, bool(flags & FLAG_HAS_BASE), offset)


def decode(stream: bytes, base: bytes = b"") -> bytes:
    """Reference decoder (the device runs the C one); raises DeltaError on any malformed stream."""
    header = parse_header(stream)
    if header.base_size != len(base):
        raise DeltaError(f"delta expects a base of {header.base_size} bytes, got {len(base)}")
    out = bytearray()
    offset = header.size
    while len(out) < header.output_size:
        coded_len, offset = _get_varint(stream, offset)
        if offset + coded_len > len(stream):
            raise DeltaError("delta block runs past the end of the stream")
        end = min(header.output_size, len(out) + (1 << header.block_log2))
        dec = Decoder(stream[offset : offset + coded_len], header.move_bits)
        dec.ladder = header.version >= FORMAT_NUMBERS
        try:
            _decode_block(dec, base, out, end, header.version)
        except DeltaError:
            raise
        except ValueError as exc:  # a number or weight class out of range
            raise DeltaError(str(exc)) from None
        offset += coded_len
    if offset != len(stream):
        raise DeltaError("trailing bytes after the last delta block")
    return bytes(out)


def _decode_weight_run(
    dec: Decoder,
    models: _Models,
    reps: list[tuple[int, int]],
    base: bytes,
    out: bytearray,
    end: int,
    version: int,
) -> list[tuple[int, int]]:
    pos = len(out)
    kind = dec.tree(models.weights.kind, tensor_coder.KIND_BITS)
    last = tensor_coder.TABLE_LAST if version >= FORMAT_LAST else tensor_coder.TABLE_DIFF
    if kind > (last if version >= FORMAT_TABLE else tensor_coder.PRODUCT):
        raise DeltaError("delta run of an unknown kind")
    if kind == tensor_coder.TABLE_LAST and models.table is None:
        raise DeltaError("delta run reuses a table before any in its block")
    diff = kind in tensor_coder.DIFF_KINDS
    dist = factor = 0
    if kind == tensor_coder.PRODUCT:
        dist = _decode_number(dec, models.dist) + 1
        factor = dec.direct_bits(32)
    if diff:
        align = next((v for kind, v in reps if kind == BASE), 0)
        reps = [(BASE, align + _unzigzag(_decode_number(dec, models.disp))), *reps[: REPS - 1]]
    count = _decode_number(dec, models.new_len) + 1
    length = 4 * count if kind in tensor_coder.WORD_KINDS else count
    if length > end - pos:
        raise DeltaError("delta weight run runs past the end of its block")
    if kind in tensor_coder.WORD_KINDS:
        if (dist and dist < length) or dist > pos:
            raise DeltaError("delta product run reads output that is not written yet")
        tensor_coder.decode_words(dec, models.weights, kind, count, out, dist, factor)
        return reps
    src = pos + reps[0][1]
    if diff and (src < 0 or src + length > len(base)):
        raise DeltaError("delta weight run predicts from outside the base model")
    if kind in tensor_coder.TABLE_KINDS or kind == tensor_coder.TABLE_LAST:
        if kind != tensor_coder.TABLE_LAST:
            models.table = table_coder.read_table(dec, models.weights.word)
        assert models.table is not None
        values = table_coder.decode_run(dec, models.weights.word, length, models.table)
        out += bytes((v + (base[src + i] if diff else 0)) & 0xFF for i, v in enumerate(values))
        return reps
    for i in range(length):
        value = tensor_coder.decode_value(dec, models.weights, kind, dec.move_bits + 1)
        out.append((value + (base[src + i] if diff else 0)) & 0xFF)
    return reps


def _decode_block(dec: Decoder, base: bytes, out: bytearray, end: int, version: int = FORMAT_VERSION) -> None:
    models = _Models(version)
    reps: list[tuple[int, int]] = [(BASE, 0)] * REPS
    prev_kind = 0
    while len(out) < end:
        pos = len(out)
        if not dec.bit(models.is_match, prev_kind):
            out.append(_decode_literal(dec, models.literal, _match_byte(base, pos, reps)))
            prev_kind = 0
            continue
        if dec.bit(models.is_rep, prev_kind):
            which = dec.tree(models.rep_which, 2)
            if which >= REPS:
                raise DeltaError("delta names a repeat slot that does not exist")
            reps.insert(0, reps.pop(which))
            length = _decode_number(dec, models.rep_len) + REP_MIN
        elif version >= FORMAT_TENSOR and dec.bit(models.is_tensor, prev_kind):
            reps = _decode_weight_run(dec, models, reps, base, out, end, version)
            prev_kind = 1
            continue
        elif not dec.bit(models.is_out, prev_kind):
            align = next((v for kind, v in reps if kind == BASE), 0)
            reps = [(BASE, align + _unzigzag(_decode_number(dec, models.disp))), *reps[: REPS - 1]]
            length = _decode_number(dec, models.new_len) + NEW_MIN
        else:
            reps = [(OUT, _decode_number(dec, models.dist) + 1), *reps[: REPS - 1]]
            length = _decode_number(dec, models.new_len) + NEW_MIN
        kind, value = reps[0]
        src = pos + value if kind == BASE else pos - value
        if length > end - pos:
            raise DeltaError("delta copy runs past the end of its block")
        if kind == BASE:
            if src < 0 or src + length > len(base):
                raise DeltaError("delta copy outside the base model")
            out += base[src : src + length]
        else:
            if src < 0:
                raise DeltaError("delta copies from before the start of the output")
            for i in range(length):
                out.append(out[src + i])
        prev_kind = 1


@dataclass(frozen=True)
class Payload:
    encoding: int  # ENCODING_RAW, ENCODING_COMPRESSED or ENCODING_DELTA
    data: bytes


def smallest_payload(new: bytes, base: bytes | None = None, block_log2: int = DEFAULT_BLOCK_LOG2) -> Payload:
    """The fewest bytes that carry `new`: raw, compressed, or (given the device's model) a delta."""
    options = [Payload(ENCODING_RAW, new), Payload(ENCODING_COMPRESSED, encode(new, b"", block_log2))]
    if base:
        options.append(Payload(ENCODING_DELTA, encode(new, base, block_log2)))
    return min(options, key=lambda p: (len(p.data), p.encoding))
