"""Adaptive binary range coder: the entropy stage of the tinyfleet delta format (docs/PROTOCOL.md 5).

Probabilities are 11-bit (the chance of a 0 bit, out of 2048) and move by 1/2**move_bits of the distance
after each bit: small models gain from fast adaptation (3), large ones from slow (5), so the stream says.
The C decoder in agent_firmware/core/src/delta.c mirrors `Decoder` operation for operation.
"""

from __future__ import annotations

import bisect

PROB_BITS = 11
PROB_ONE = 1 << PROB_BITS
PROB_INIT = PROB_ONE // 2
MOVE_BITS = 4
TOP = 1 << 24
MASK32 = 0xFFFFFFFF
NUMBER_TREE_BITS = 6  # a number's bit count (0..32) as a 6-bit tree
NUMBER_LOW_BITS = 3  # its lowest bits adaptive, per bit count
NUMBER_PROBS = (1 << NUMBER_TREE_BITS) + 33 * (1 << NUMBER_LOW_BITS)
# Format version 5 numbers (PROTOCOL 5.8): the bit count through a ladder of classes (0-3, 4-7, 8-15,
# 16-32: up to 3 escape bits at LADDER_ESCAPES, then a tree of LADDER_WIDTHS bits whose entries start at
# the class's first count), so short copies take 3-4 decisions instead of 6; a count above 4 sends the bits
# below its top one in one or two equal-chance steps instead of direct bits and a tree
LADDER_FIRST = (0, 4, 8, 16)
LADDER_WIDTHS = (2, 2, 3, 5)
LADDER_ESCAPES = 48
LADDER_LOW_MAX = 4  # counts up to this keep the adaptive tree of their low bits
UNIFORM_MAX = 16  # bits per equal-chance step


FREQ_LIMIT = 1 << 13  # an adaptive frequency model halves its counts when their total passes this
NUMBER_SYMBOLS = 33  # version 6 numbers: the bit count 0..32 as one adaptive symbol
NUMBER_INC = 8  # ... learnt this fast (the smallest of 1-8 on hello_world's numbers; 2-4 within 2%)


class FreqModel:
    """Adaptive frequencies (format version 6): every symbol starts at 1, a coded symbol gains `inc`, and
    all halve (rounding up, so none reaches 0) once the total passes FREQ_LIMIT. The C decoder keeps the
    counts as uint16 with the total after them."""

    __slots__ = ("counts", "inc", "total")

    def __init__(self, size: int, inc: int) -> None:
        self.counts = [1] * size
        self.total = size
        self.inc = inc

    def copy(self) -> FreqModel:
        other = FreqModel(0, self.inc)
        other.counts, other.total = list(self.counts), self.total
        return other

    def learn(self, s: int) -> None:
        self.counts[s] += self.inc
        self.total += self.inc
        if self.total > FREQ_LIMIT:
            self.counts = [(c + 1) >> 1 for c in self.counts]
            self.total = sum(self.counts)


NumberModel = list[int] | FreqModel  # a number's table: binary probabilities, or (version 6) counts


class Encoder:
    ladder = False  # format version 5 numbers

    def __init__(self, move_bits: int = MOVE_BITS) -> None:
        self.move_bits = move_bits
        self.low = 0  # up to 33 bits: bit 32 is a pending carry
        self.range = MASK32
        self.cache = 0
        self.cache_size = 1
        self.out = bytearray()
        self.decisions = 0  # coded bits and table symbols: what the decoder's time is spent on
        self.symbols = 0  # of which table symbols and equal-chance steps (a division each)
        self.directs = 0  # of which direct bits (cheaper than adaptive ones)
        self.freqs = 0  # adaptive frequency symbols (version 6), not counted in `symbols`
        self.steps = 0  # ... and the decoder's search steps for them (the symbols' sum)
        self.calls = 0  # numbers of binary models (versions 1-5): the decoder calls out for each

    def _shift_low(self) -> None:
        if self.low < 0xFF000000 or self.low > MASK32:
            carry = self.low >> 32
            byte = self.cache
            while True:
                self.out.append((byte + carry) & 0xFF)
                byte = 0xFF
                self.cache_size -= 1
                if self.cache_size == 0:
                    break
            self.cache = (self.low >> 24) & 0xFF
        self.cache_size += 1
        self.low = (self.low << 8) & MASK32

    def bit(self, probs: list[int], index: int, bit: int, move_bits: int = 0) -> None:
        """One bit with probs[index]; move_bits overrides the stream's adaptation rate when non-zero."""
        p = probs[index]
        shift = move_bits or self.move_bits
        bound = (self.range >> PROB_BITS) * p
        self.decisions += 1
        if bit:
            self.low += bound
            self.range -= bound
            probs[index] = p - (p >> shift)
        else:
            self.range = bound
            probs[index] = p + ((PROB_ONE - p) >> shift)
        while self.range < TOP:
            self.range = (self.range << 8) & MASK32
            self._shift_low()

    def direct_bits(self, value: int, count: int) -> None:
        """`count` bits of `value`, most significant first, each at probability one half."""
        self.decisions += count
        self.directs += count
        for shift in range(count - 1, -1, -1):
            self.range >>= 1
            if (value >> shift) & 1:
                self.low += self.range
            while self.range < TOP:
                self.range = (self.range << 8) & MASK32
                self._shift_low()

    def tree(self, probs: list[int], bits: int, value: int, move_bits: int = 0) -> None:
        """`value` (< 2**bits) as a tree of adaptive bits; probs has 2**bits entries, index 0 unused."""
        node = 1
        for shift in range(bits - 1, -1, -1):
            bit = (value >> shift) & 1
            self.bit(probs, node, bit, move_bits)
            node = (node << 1) | bit

    def symbol(self, start: int, size: int, total_bits: int) -> None:
        """A symbol of a static table: cumulative frequency `start`, frequency `size`, out of
        2**total_bits (format version 3 table runs; one division per symbol in the decoder)."""
        r = self.range >> total_bits
        self.decisions += 1
        self.symbols += 1
        self.low += r * start
        self.range = r * size
        while self.range < TOP:
            self.range = (self.range << 8) & MASK32
            self._shift_low()

    def uniform(self, value: int, bits: int) -> None:
        """`value` < 2**bits at equal chances in one step (a symbol of frequency 1 out of 2**bits)."""
        self.symbol(value, 1, bits)

    def freq(self, model: FreqModel, s: int) -> None:
        """Symbol `s` of an adaptive frequency model (format version 6, PROTOCOL 5.10): r = range / total,
        one division where an adaptive bit tree would take a decision per bit; then the model learns s."""
        counts = model.counts
        r = self.range // model.total
        self.decisions += 1
        self.freqs += 1
        self.steps += s
        self.low += r * sum(counts[:s])
        self.range = r * counts[s]
        while self.range < TOP:
            self.range = (self.range << 8) & MASK32
            self._shift_low()
        model.learn(s)

    def finish(self) -> bytes:
        """The coded bytes. The first byte the carry logic emits is always 0, so it is not sent."""
        for _ in range(5):
            self._shift_low()
        assert self.out[0] == 0
        return bytes(self.out[1:])


class Decoder:
    ladder = False  # format version 5 numbers

    def __init__(self, data: bytes, move_bits: int = MOVE_BITS) -> None:
        self.move_bits = move_bits
        self.data = data
        self.pos = 0
        self.code = 0
        for _ in range(4):
            self.code = (self.code << 8) | self._next()
        self.range = MASK32

    def _next(self) -> int:
        # Reading past the end yields zeros; the caller checks sizes, and a corrupt stream only decodes
        # garbage that the final SHA-256 rejects.
        byte = self.data[self.pos] if self.pos < len(self.data) else 0
        self.pos += 1
        return byte

    def bit(self, probs: list[int], index: int, move_bits: int = 0) -> int:
        p = probs[index]
        shift = move_bits or self.move_bits
        bound = (self.range >> PROB_BITS) * p
        if self.code < bound:
            self.range = bound
            probs[index] = p + ((PROB_ONE - p) >> shift)
            bit = 0
        else:
            self.code -= bound
            self.range -= bound
            probs[index] = p - (p >> shift)
            bit = 1
        while self.range < TOP:
            self.range = (self.range << 8) & MASK32
            self.code = ((self.code << 8) | self._next()) & MASK32
        return bit

    def direct_bits(self, count: int) -> int:
        value = 0
        for _ in range(count):
            self.range >>= 1
            bit = 1 if self.code >= self.range else 0
            if bit:
                self.code -= self.range
            value = (value << 1) | bit
            while self.range < TOP:
                self.range = (self.range << 8) & MASK32
                self.code = ((self.code << 8) | self._next()) & MASK32
        return value

    def tree(self, probs: list[int], bits: int, move_bits: int = 0) -> int:
        node = 1
        for _ in range(bits):
            node = (node << 1) | self.bit(probs, node, move_bits)
        return node - (1 << bits)

    def symbol(self, cum: list[int], total_bits: int) -> int:
        """Inverse of Encoder.symbol: the s with cum[s] <= code / (range >> total_bits) < cum[s + 1]; cum
        starts at 0 and ends at 2**total_bits. A quotient past the table (corrupt stream) is a ValueError."""
        r = self.range >> total_bits
        q = self.code // r
        if q >> total_bits:
            raise ValueError("table symbol out of range")
        s = bisect.bisect_right(cum, q) - 1
        self.code -= r * cum[s]
        self.range = r * (cum[s + 1] - cum[s])
        while self.range < TOP:
            self.range = (self.range << 8) & MASK32
            self.code = ((self.code << 8) | self._next()) & MASK32
        return s

    def freq(self, model: FreqModel) -> int:
        """Inverse of Encoder.freq: the symbol whose cumulative counts hold code / (range / total), found
        from symbol 0 up. A quotient of total or more (corrupt stream) is a ValueError."""
        counts = model.counts
        r = self.range // model.total
        q = self.code // r
        if q >= model.total:
            raise ValueError("adaptive symbol out of range")
        s = low = 0
        while low + counts[s] <= q:
            low += counts[s]
            s += 1
        self.code -= r * low
        self.range = r * counts[s]
        while self.range < TOP:
            self.range = (self.range << 8) & MASK32
            self.code = ((self.code << 8) | self._next()) & MASK32
        model.learn(s)
        return s

    def uniform(self, bits: int) -> int:
        """Inverse of Encoder.uniform: code / (range >> bits), which must be < 2**bits."""
        r = self.range >> bits
        q = self.code // r
        if q >> bits:
            raise ValueError("uniform value out of range")
        self.code -= r * q
        self.range = r
        while self.range < TOP:
            self.range = (self.range << 8) & MASK32
            self.code = ((self.code << 8) | self._next()) & MASK32
        return q


def zigzag(d: int) -> int:
    return 2 * d if d >= 0 else -2 * d - 1


def unzigzag(z: int) -> int:
    return z >> 1 if z % 2 == 0 else -((z + 1) >> 1)


def _encode_low_bits(enc: Encoder, value: int) -> None:
    """The bits below a number's top one at equal chances, in steps of at most UNIFORM_MAX bits, the high
    step first (versions 5, for bit counts above LADDER_LOW_MAX, and 6)."""
    bits = value.bit_length()
    if bits <= 1:
        return
    rest = value - (1 << (bits - 1))
    if bits - 1 > UNIFORM_MAX:
        enc.uniform(rest >> UNIFORM_MAX, bits - 1 - UNIFORM_MAX)
    width = min(bits - 1, UNIFORM_MAX)
    enc.uniform(rest & ((1 << width) - 1), width)


def _decode_low_bits(dec: Decoder, bits: int) -> int:
    if bits <= 1:
        return bits
    high = dec.uniform(bits - 1 - UNIFORM_MAX) if bits - 1 > UNIFORM_MAX else 0
    width = min(bits - 1, UNIFORM_MAX)
    return (1 << (bits - 1)) | (high << width) | dec.uniform(width)


def encode_number(enc: Encoder, probs: NumberModel, value: int) -> None:
    """Bit count through an adaptive tree, then the bits below the top one: the high ones at one half,
    the lowest NUMBER_LOW_BITS adaptively (per bit count)."""
    bits = value.bit_length()
    if isinstance(probs, FreqModel):
        enc.freq(probs, bits)
        _encode_low_bits(enc, value)
        return
    enc.calls += 1
    if enc.ladder:
        _encode_ladder(enc, probs, value)
        return
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


def _encode_ladder(enc: Encoder, probs: list[int], value: int) -> None:
    bits = value.bit_length()
    k = max(c for c in range(4) if LADDER_FIRST[c] <= bits)
    for c in range(min(k + 1, 3)):
        enc.bit(probs, LADDER_ESCAPES + c, int(c < k))
    first, node = LADDER_FIRST[k], 1
    for shift in range(LADDER_WIDTHS[k] - 1, -1, -1):
        bit = ((bits - first) >> shift) & 1
        enc.bit(probs, first + node, bit)
        node = (node << 1) | bit
    rest = value - (1 << (bits - 1)) if bits > 1 else 0
    if bits > LADDER_LOW_MAX:
        _encode_low_bits(enc, value)
        return
    node = 1
    table = (1 << NUMBER_TREE_BITS) + bits * (1 << NUMBER_LOW_BITS)
    for shift in range(bits - 2, -1, -1):
        bit = (rest >> shift) & 1
        enc.bit(probs, table + node, bit)
        node = (node << 1) | bit


def _decode_ladder(dec: Decoder, probs: list[int]) -> int:
    k = 0
    while k < 3 and dec.bit(probs, LADDER_ESCAPES + k):
        k += 1
    first, node = LADDER_FIRST[k], 1
    for _ in range(LADDER_WIDTHS[k]):
        node = (node << 1) | dec.bit(probs, first + node)
    bits = first + node - (1 << LADDER_WIDTHS[k])
    if bits <= 1:
        return bits
    if bits > 32:
        raise ValueError("number wider than 32 bits")
    if bits > LADDER_LOW_MAX:
        return _decode_low_bits(dec, bits)
    node = 1
    table = (1 << NUMBER_TREE_BITS) + bits * (1 << NUMBER_LOW_BITS)
    for _ in range(bits - 1):
        node = (node << 1) | dec.bit(probs, table + node)
    return (1 << (bits - 1)) | (node - (1 << (bits - 1)))


def decode_number(dec: Decoder, probs: NumberModel) -> int:
    if isinstance(probs, FreqModel):
        return _decode_low_bits(dec, dec.freq(probs))
    if dec.ladder:
        return _decode_ladder(dec, probs)
    bits = dec.tree(probs, NUMBER_TREE_BITS)
    if bits <= 1:
        return bits
    if bits > 32:
        raise ValueError("number wider than 32 bits")
    low = min(bits - 1, NUMBER_LOW_BITS)
    rest = dec.direct_bits(bits - 1 - low) if bits - 1 > low else 0
    node = 1
    table = (1 << NUMBER_TREE_BITS) + bits * (1 << NUMBER_LOW_BITS)
    for _ in range(low):
        node = (node << 1) | dec.bit(probs, table + node)
    return (1 << (bits - 1)) | (rest << low) | (node - (1 << low))
