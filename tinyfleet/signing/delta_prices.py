"""What the delta encoder's ops would cost in bits with the adaptive models as they stand (the parser of
tinyfleet/signing/delta_parser.py weighs copies against literals with these). Each price mirrors the
encoder's code path in delta.py and rangecoder.py; the models keep moving as ops are coded, so a price is
exact for the next op only and an estimate for the ones after it."""

from __future__ import annotations

import math
from typing import Any

from tinyfleet.signing.rangecoder import (
    LADDER_ESCAPES,
    LADDER_FIRST,
    LADDER_LOW_MAX,
    LADDER_WIDTHS,
    NUMBER_LOW_BITS,
    NUMBER_TREE_BITS,
    PROB_BITS,
    PROB_ONE,
    FreqModel,
    NumberModel,
)

# ZERO_PRICE[p]: bits of a 0 coded at probability p (of 2**PROB_BITS) of a 0; a 1 costs
# ZERO_PRICE[PROB_ONE - p]
ZERO_PRICE = [64.0] + [PROB_BITS - math.log2(p) for p in range(1, PROB_ONE + 1)]
MAX_NUMBER_BITS = 33


def bit_price(probs: list[int], index: int, bit: int) -> float:
    p = probs[index]
    return ZERO_PRICE[PROB_ONE - p if bit else p]


def tree_price(probs: list[int], bits: int, value: int) -> float:
    node, total = 1, 0.0
    for shift in range(bits - 1, -1, -1):
        bit = (value >> shift) & 1
        total += bit_price(probs, node, bit)
        node = (node << 1) | bit
    return total


def freq_price(model: FreqModel, s: int) -> float:
    return math.log2(model.total / model.counts[s])


class NumberPrices:
    """Bits of a number in one model: its bit count's price once per count, the bits below (equal-chance
    or adaptive per count) per value."""

    def __init__(self, probs: NumberModel, ladder: bool) -> None:
        self.probs, self.ladder = probs, ladder
        self.counts: list[float | None] = [None] * MAX_NUMBER_BITS  # priced when first asked
        self.known: dict[int, float] = {}

    def count_price(self, bits: int) -> float:
        found = self.counts[bits]
        if found is None:
            found = self.counts[bits] = self._count(bits)
        return found

    def _count(self, bits: int) -> float:
        probs = self.probs
        if isinstance(probs, FreqModel):
            return freq_price(probs, bits)
        if not self.ladder:
            return tree_price(probs, NUMBER_TREE_BITS, bits)
        k = max(c for c in range(4) if LADDER_FIRST[c] <= bits)
        total = sum(bit_price(probs, LADDER_ESCAPES + c, int(c < k)) for c in range(min(k + 1, 3)))
        node = 1
        for shift in range(LADDER_WIDTHS[k] - 1, -1, -1):
            bit = ((bits - LADDER_FIRST[k]) >> shift) & 1
            total += bit_price(probs, LADDER_FIRST[k] + node, bit)
            node = (node << 1) | bit
        return total

    def price(self, value: int) -> float:
        found = self.known.get(value)
        if found is None:
            found = self.known[value] = self._price(value)
        return found

    def _price(self, value: int) -> float:
        bits = value.bit_length()
        if bits <= 1:
            return self.count_price(bits)
        probs = self.probs
        if isinstance(probs, FreqModel) or (self.ladder and bits > LADDER_LOW_MAX):
            return self.count_price(bits) + bits - 1  # equal-chance bits below the top one
        # the lowest bits adaptive, per bit count (version 5 up to LADDER_LOW_MAX, all below the top one)
        low = bits - 1 if self.ladder else min(bits - 1, NUMBER_LOW_BITS)
        rest = value - (1 << (bits - 1))
        table = (1 << NUMBER_TREE_BITS) + bits * (1 << NUMBER_LOW_BITS)
        node, total = 1, self.count_price(bits) + bits - 1 - low
        for shift in range(low - 1, -1, -1):
            bit = (rest >> shift) & 1
            total += bit_price(probs, table + node, bit)
            node = (node << 1) | bit
        return total


class Prices:
    """The prices of the parser's choices from one snapshot of a block's models (delta._Models)."""

    def __init__(self, models: Any, ladder: bool, tensor: bool) -> None:
        self.models = models
        self.rep_len = NumberPrices(models.rep_len, ladder)
        self.new_len = NumberPrices(models.new_len, ladder)
        self.disp = NumberPrices(models.disp, ladder)
        self.dist = NumberPrices(models.dist, ladder)
        # per previous op kind (0 literal, 1 copy or run): the flags in front of each op
        self.literal_flag = [bit_price(models.is_match, k, 0) for k in range(2)]
        copy_flag = [bit_price(models.is_match, k, 1) for k in range(2)]
        self.rep_flag = [
            [
                copy_flag[k] + bit_price(models.is_rep, k, 1) + tree_price(models.rep_which, 2, i)
                for i in range(3)
            ]
            for k in range(2)
        ]
        new_flag = [
            copy_flag[k]
            + bit_price(models.is_rep, k, 0)
            + (bit_price(models.is_tensor, k, 0) if tensor else 0.0)
            for k in range(2)
        ]
        self.base_flag = [new_flag[k] + bit_price(models.is_out, k, 0) for k in range(2)]
        self.out_flag = [new_flag[k] + bit_price(models.is_out, k, 1) for k in range(2)]
        self.literals: dict[tuple[int, int], float] = {}

    def literal(self, byte: int, match: int | None) -> float:
        key = (byte, -1 if match is None else match)
        found = self.literals.get(key)
        if found is None:
            found = self.literals[key] = self._literal(byte, match)
        return found

    def _literal(self, byte: int, match: int | None) -> float:
        probs = self.models.literal
        if not isinstance(probs, list):  # version 6: two nibbles
            high = probs.high[16 if match is None else match >> 4]
            return freq_price(high, byte >> 4) + freq_price(probs.low[byte >> 4], byte & 15)
        node, matching, total = 1, match is not None, 0.0
        for shift in range(7, -1, -1):
            bit = (byte >> shift) & 1
            if matching:
                assert match is not None
                match_bit = (match >> shift) & 1
                total += bit_price(probs[1 + match_bit], node, bit)
                matching = bit == match_bit
            else:
                total += bit_price(probs[0], node, bit)
            node = (node << 1) | bit
        return total
