"""tinyfleet delta format (docs/PROTOCOL.md section 5): encoder, reference decoder, and the choice of
the smallest payload (delta, compressed full model, or raw).

A model update is coded as ops over the new model's bytes: copy from the base model (the device's active
slot), copy from output already written (the target slot), or a literal coded as its difference from
the base byte at the current alignment, so a retrained weight that moved by a few steps costs a few bits.
Everything is entropy-coded with the adaptive binary range coder in `rangecoder`. The output is cut into
independent blocks (models and alignment reset) so a device can resume after a reboot at a block start
without keeping decoder state in flash.
"""

from __future__ import annotations

from dataclasses import dataclass

from tinyfleet.signing.rangecoder import PROB_INIT, Decoder, Encoder

MAGIC = b"TD"
FORMAT_VERSION = 1
FLAG_HAS_BASE = 1
DEFAULT_BLOCK_LOG2 = 15  # 32 KiB of output per independent block
MIN_BLOCK_LOG2, MAX_BLOCK_LOG2 = 10, 20
MOVE_BITS_CHOICES = (3, 4, 5)  # adaptation rates the encoder tries (fast suits small models)
REP_MIN = 2
NEW_MIN = 4
REPS = 3
NUMBER_TREE_BITS = 6
NUMBER_LOW_BITS = 3
HASH_LEN = 4
MAX_CANDIDATES = 16
LITERAL_BITS_ESTIMATE = 6  # what the parser assumes a literal costs when it weighs a copy against literals

ENCODING_RAW = 0
ENCODING_COMPRESSED = 1
ENCODING_DELTA = 2

BASE, OUT = 0, 1  # the two sources a copy reads: the base model, or output already written


class DeltaError(ValueError):
    """A delta stream that is malformed or does not fit its base."""


class _Models:
    """Adaptive probabilities; the C decoder keeps the same arrays as uint16 (about 2.6 KiB)."""

    def __init__(self) -> None:
        self.is_match = [PROB_INIT] * 2
        self.is_rep = [PROB_INIT] * 2
        self.rep_which = [PROB_INIT] * 4
        self.is_out = [PROB_INIT] * 2
        self.literal = [[PROB_INIT] * 256 for _ in range(3)]
        number_size = (1 << NUMBER_TREE_BITS) + 33 * (1 << NUMBER_LOW_BITS)
        self.rep_len = [PROB_INIT] * number_size
        self.new_len = [PROB_INIT] * number_size
        self.disp = [PROB_INIT] * number_size
        self.dist = [PROB_INIT] * number_size


def _match_byte(base: bytes, pos: int, reps: list[tuple[int, int]]) -> int | None:
    """The base byte at the latest base alignment, the context a literal is coded in (None: no base)."""
    src = pos + next((v for kind, v in reps if kind == BASE), 0)
    return base[src] if 0 <= src < len(base) else None


def _encode_literal(enc: Encoder, probs: list[list[int]], byte: int, match: int | None) -> None:
    """A literal, bit by bit. While its bits agree with the match byte's, each is coded in the context
    of the match bit (probs[1] or probs[2]): a byte kept from the base, or a weight pruned to zero, costs
    little; after the first disagreement, or with no base, the plain tree probs[0] is used."""
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


def _decode_literal(dec: Decoder, probs: list[list[int]], match: int | None) -> int:
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


def _zigzag(d: int) -> int:
    return 2 * d if d >= 0 else -2 * d - 1


def _unzigzag(z: int) -> int:
    return z >> 1 if z % 2 == 0 else -((z + 1) >> 1)


def _encode_number(enc: Encoder, probs: list[int], value: int) -> None:
    """Bit count through an adaptive tree, then the bits below the top one: the high ones at one half,
    the lowest NUMBER_LOW_BITS adaptively (per bit count)."""
    bits = value.bit_length()
    enc.tree(probs, NUMBER_TREE_BITS, bits)
    if bits <= 1:
        return
    rest = value - (1 << (bits - 1))
    low = min(bits - 1, NUMBER_LOW_BITS)
    if bits - 1 > low:
        enc.direct_bits(rest >> low, bits - 1 - low)
    node = 1
    table = (1 << NUMBER_TREE_BITS) + bits * (1 << NUMBER_LOW_BITS)
    for shift in range(low - 1, -1, -1):
        bit = (rest >> shift) & 1
        enc.bit(probs, table + node, bit)
        node = (node << 1) | bit


def _decode_number(dec: Decoder, probs: list[int]) -> int:
    bits = dec.tree(probs, NUMBER_TREE_BITS)
    if bits <= 1:
        return bits
    if bits > 32:
        raise DeltaError("number wider than 32 bits")
    low = min(bits - 1, NUMBER_LOW_BITS)
    rest = dec.direct_bits(bits - 1 - low) if bits - 1 > low else 0
    node = 1
    table = (1 << NUMBER_TREE_BITS) + bits * (1 << NUMBER_LOW_BITS)
    for _ in range(low):
        node = (node << 1) | dec.bit(probs, table + node)
    return (1 << (bits - 1)) | (rest << low) | (node - (1 << low))


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


def _common_length(a: bytes, ai: int, b: bytes, bi: int, limit: int) -> int:
    limit = min(limit, len(a) - ai, len(b) - bi)
    n = 0
    while n + 32 <= limit and a[ai + n : ai + n + 32] == b[bi + n : bi + n + 32]:
        n += 32
    while n < limit and a[ai + n] == b[bi + n]:
        n += 1
    return n


class _Index:
    """Positions of every 4-byte string, newest last."""

    def __init__(self) -> None:
        self.table: dict[bytes, list[int]] = {}

    def add(self, data: bytes, pos: int) -> None:
        if pos + HASH_LEN <= len(data):
            self.table.setdefault(data[pos : pos + HASH_LEN], []).append(pos)

    def candidates(self, key: bytes) -> list[int]:
        return self.table.get(key, [])[-MAX_CANDIDATES:]


@dataclass
class _Copy:
    """A copy the parser may emit, with its estimated gain in bits over coding the bytes as literals."""

    kind: str  # "rep", "base" or "out"
    length: int
    value: int  # rep index, new base displacement, or output distance
    gain: float


def _source_start(rep: tuple[int, int], pos: int) -> int:
    kind, value = rep
    return pos + value if kind == BASE else pos - value


class _Parser:
    def __init__(self, new: bytes, base: bytes) -> None:
        self.new, self.base = new, base
        self.base_index = _Index()
        for i in range(len(base) - HASH_LEN + 1):
            self.base_index.add(base, i)
        self.out_index = _Index()
        self.indexed = 0

    def best_copy(self, pos: int, end: int, reps: list[tuple[int, int]]) -> _Copy | None:
        new, base = self.new, self.base
        while self.indexed < pos:
            self.out_index.add(new, self.indexed)
            self.indexed += 1
        limit = end - pos
        lit = LITERAL_BITS_ESTIMATE
        best: _Copy | None = None
        for k, rep in enumerate(reps):
            src = _source_start(rep, pos)
            source = base if rep[0] == BASE else new
            if 0 <= src < (len(base) if rep[0] == BASE else pos):
                n = _common_length(source, src, new, pos, limit)
                gain = n * lit - (4 + 2 * k + 2 * n.bit_length())
                if n >= REP_MIN and (best is None or gain > best.gain):
                    best = _Copy("rep", n, k, gain)
        key = new[pos : pos + HASH_LEN]
        if len(key) < HASH_LEN:
            return best
        align = next((v for kind, v in reps if kind == BASE), 0)
        for cand in reversed(self.base_index.candidates(key)):
            n = _common_length(base, cand, new, pos, limit)
            disp = cand - pos
            gain = n * lit - (8 + 2 * _zigzag(disp - align).bit_length() + 2 * n.bit_length())
            if n >= NEW_MIN and (best is None or gain > best.gain):
                best = _Copy("base", n, disp, gain)
        for cand in reversed(self.out_index.candidates(key)):
            n = _common_length(new, cand, new, pos, limit)
            gain = n * lit - (8 + 2 * (pos - cand).bit_length() + 2 * n.bit_length())
            if n >= NEW_MIN and (best is None or gain > best.gain):
                best = _Copy("out", n, pos - cand, gain)
        return best if best is not None and best.gain > 0 else None


def _encode_block(parser: _Parser, start: int, end: int, move_bits: int) -> bytes:
    new, base = parser.new, parser.base
    enc = Encoder(move_bits)
    models = _Models()
    reps: list[tuple[int, int]] = [(BASE, 0)] * REPS
    pos, prev_kind = start, 0
    while pos < end:
        copy = parser.best_copy(pos, end, reps)
        if copy is not None and copy.length < end - pos:
            # Lazy step: a clearly better copy one byte later is worth a literal now.
            later = parser.best_copy(pos + 1, end, reps)
            if later is not None and later.gain > copy.gain + LITERAL_BITS_ESTIMATE + 2:
                copy = None
        if copy is None:
            enc.bit(models.is_match, prev_kind, 0)
            _encode_literal(enc, models.literal, new[pos], _match_byte(base, pos, reps))
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
    # The decoder reads zeros past the end of a block, so trailing zero bytes need not be sent.
    return enc.finish().rstrip(b"\x00")


def encode(new: bytes, base: bytes = b"", block_log2: int = DEFAULT_BLOCK_LOG2) -> bytes:
    """A delta of `new` against `base`; with an empty base it is a plain compressed model.

    Tries each adaptation rate and keeps the smallest stream.
    """
    if not MIN_BLOCK_LOG2 <= block_log2 <= MAX_BLOCK_LOG2:
        raise ValueError(f"block size must be 2**{MIN_BLOCK_LOG2}..2**{MAX_BLOCK_LOG2}")
    if not new:
        raise ValueError("nothing to encode: the new model is empty")
    parser = _Parser(new, base)
    rates = MOVE_BITS_CHOICES if len(new) <= 64 * 1024 else MOVE_BITS_CHOICES[1:]
    return min((_encode_stream(parser, block_log2, rate) for rate in rates), key=len)


def _encode_stream(parser: _Parser, block_log2: int, move_bits: int) -> bytes:
    new, base = parser.new, parser.base
    parser.out_index, parser.indexed = _Index(), 0
    stream = bytearray(MAGIC)
    stream += bytes((FORMAT_VERSION, FLAG_HAS_BASE if base else 0, block_log2, move_bits))
    _put_varint(stream, len(new))
    _put_varint(stream, len(base))
    block = 1 << block_log2
    for start in range(0, len(new), block):
        coded = _encode_block(parser, start, min(len(new), start + block), move_bits)
        _put_varint(stream, len(coded))
        stream += coded
    return bytes(stream)


@dataclass(frozen=True)
class Header:
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
    if version != FORMAT_VERSION or flags & ~FLAG_HAS_BASE:
        raise DeltaError(f"unsupported delta format version {version} or flags {flags:#x}")
    if not MIN_BLOCK_LOG2 <= block_log2 <= MAX_BLOCK_LOG2 or move_bits not in MOVE_BITS_CHOICES:
        raise DeltaError("delta block size or adaptation rate out of range")
    output_size, offset = _get_varint(stream, 6)
    base_size, offset = _get_varint(stream, offset)
    if output_size == 0 or bool(flags & FLAG_HAS_BASE) != (base_size > 0):
        raise DeltaError("delta header out of range")
    return Header(block_log2, move_bits, output_size, base_size, bool(flags & FLAG_HAS_BASE), offset)


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
        _decode_block(Decoder(stream[offset : offset + coded_len], header.move_bits), base, out, end)
        offset += coded_len
    if offset != len(stream):
        raise DeltaError("trailing bytes after the last delta block")
    return bytes(out)


def _decode_block(dec: Decoder, base: bytes, out: bytearray, end: int) -> None:
    models = _Models()
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
