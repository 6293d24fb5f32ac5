"""Adaptive binary range coder: the entropy stage of the tinyfleet delta format (docs/PROTOCOL.md 5).

Probabilities are 11-bit (the chance of a 0 bit, out of 2048) and move by 1/2**move_bits of the distance
after each bit: small models gain from fast adaptation (3), large ones from slow (5), so the stream says.
The C decoder in agent_firmware/core/src/delta.c mirrors `Decoder` operation for operation.
"""

from __future__ import annotations

PROB_BITS = 11
PROB_ONE = 1 << PROB_BITS
PROB_INIT = PROB_ONE // 2
MOVE_BITS = 4
TOP = 1 << 24
MASK32 = 0xFFFFFFFF


class Encoder:
    def __init__(self, move_bits: int = MOVE_BITS) -> None:
        self.move_bits = move_bits
        self.low = 0  # up to 33 bits: bit 32 is a pending carry
        self.range = MASK32
        self.cache = 0
        self.cache_size = 1
        self.out = bytearray()

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

    def bit(self, probs: list[int], index: int, bit: int) -> None:
        p = probs[index]
        bound = (self.range >> PROB_BITS) * p
        if bit:
            self.low += bound
            self.range -= bound
            probs[index] = p - (p >> self.move_bits)
        else:
            self.range = bound
            probs[index] = p + ((PROB_ONE - p) >> self.move_bits)
        while self.range < TOP:
            self.range = (self.range << 8) & MASK32
            self._shift_low()

    def direct_bits(self, value: int, count: int) -> None:
        """`count` bits of `value`, most significant first, each at probability one half."""
        for shift in range(count - 1, -1, -1):
            self.range >>= 1
            if (value >> shift) & 1:
                self.low += self.range
            while self.range < TOP:
                self.range = (self.range << 8) & MASK32
                self._shift_low()

    def tree(self, probs: list[int], bits: int, value: int) -> None:
        """`value` (< 2**bits) as a tree of adaptive bits; probs has 2**bits entries, index 0 unused."""
        node = 1
        for shift in range(bits - 1, -1, -1):
            bit = (value >> shift) & 1
            self.bit(probs, node, bit)
            node = (node << 1) | bit

    def finish(self) -> bytes:
        """The coded bytes. The first byte the carry logic emits is always 0, so it is not sent."""
        for _ in range(5):
            self._shift_low()
        assert self.out[0] == 0
        return bytes(self.out[1:])


class Decoder:
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

    def bit(self, probs: list[int], index: int) -> int:
        p = probs[index]
        bound = (self.range >> PROB_BITS) * p
        if self.code < bound:
            self.range = bound
            probs[index] = p + ((PROB_ONE - p) >> self.move_bits)
            bit = 0
        else:
            self.code -= bound
            self.range -= bound
            probs[index] = p - (p >> self.move_bits)
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

    def tree(self, probs: list[int], bits: int) -> int:
        node = 1
        for _ in range(bits):
            node = (node << 1) | self.bit(probs, node)
        return node - (1 << bits)
