"""Table runs of the tinyfleet delta format version 3 (docs/PROTOCOL.md 5.6): a run of int8 weights (or
their differences from the base tensor) coded one byte per symbol with a static frequency table sent in
the run's header, instead of the ~10 adaptive binary decisions per value of a version 2 weight run.

Why: the device decodes an adaptive binary decision in 25-38 Cortex-M4 instructions, so a version 2
weight (about 7.5 bits of information, 10 decisions) costs about 300; a table symbol costs one division,
a table look-up and a short scan, about 30. Retrained weights are close to independent draws from one
distribution (see tensor_coder), so a static order-0 table per run loses nothing to adaptation and gains
the adaptive models' estimation noise, which pays for the table on tensors of a few hundred bytes and up.

Values are taken in zigzag order (0, -1, 1, -2, ...: k = 2|v| - (v < 0)), so a bell-shaped weight
distribution gives a table that tails off smoothly. A table is exact (a symbol per k, up to 256 entries:
best for large tensors) or bucketed (32 entries: k < 16 exactly, larger k by its top three bits, the bits
below them at equal chances: a small tensor cannot pay for 256 entries). Frequencies sum to
2**TABLE_BITS and are sent as differences from the previous one. The encoder (tensor_coder.plan_runs)
picks this or the version 2 binary coding per run, with a margin in favour of the faster table.
"""

from __future__ import annotations

import math
from collections import Counter

from tinyfleet.signing.rangecoder import (
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

TABLE_BITS = 12
TABLE_TOTAL = 1 << TABLE_BITS
EXACT_COUNT_BITS = 8  # entry count - 1 of an exact table, as direct bits
BUCKET_COUNT_BITS = 5  # of a bucketed one (32 buckets)
EXACT_BELOW = 16  # bucketed tables: k below this has a bucket of its own
EXTRA_STEP_BITS = 0.05  # a bucketed value's second division, in bits: large tensors take exact tables


def symbol_of(value: int) -> int:
    """The zigzag index k of an int8 value (-128..127) or of a byte read as int8."""
    v = value - 256 if value >= 128 else value
    return zigzag(v)


def byte_of(symbol: int) -> int:
    return unzigzag(symbol) & 0xFF


def bucket_of(k: int) -> tuple[int, int, int]:
    """(bucket, the bits of k below its top three, how many) for a bucketed table."""
    if k < EXACT_BELOW:
        return k, 0, 0
    extra = k.bit_length() - 3
    return EXACT_BELOW + (extra - 2) * 4 + ((k >> extra) & 3), k & ((1 << extra) - 1), extra


def bucket_start(bucket: int) -> tuple[int, int]:
    """(first k of the bucket, its extra bits): the inverse of bucket_of."""
    if bucket < EXACT_BELOW:
        return bucket, 0
    extra = (bucket - EXACT_BELOW) // 4 + 2
    return (4 + (bucket - EXACT_BELOW) % 4) << extra, extra


def frequencies(symbols: list[int]) -> list[int]:
    """Frequencies of symbols 0..n-1 (n = the highest used + 1) summing to TABLE_TOTAL, each used symbol
    at least 1: proportional to the counts, the rounding error taken from or given to the largest."""
    counts = Counter(symbols)
    n = max(counts) + 1
    total = len(symbols)
    freq = [max(1, round(counts[s] * TABLE_TOTAL / total)) if counts[s] else 0 for s in range(n)]
    order = sorted(range(n), key=lambda s: (-counts[s], s))
    diff = TABLE_TOTAL - sum(freq)
    i = 0
    while diff != 0:  # one step at a time over the most frequent symbols, never below 1
        s = order[i % len(order)]
        if diff > 0:
            freq[s] += 1
            diff -= 1
        elif freq[s] > 1:
            freq[s] -= 1
            diff += 1
        i += 1
    return freq


def encode_table(enc: Encoder, probs: NumberModel, freq: list[int], count_bits: int) -> None:
    enc.direct_bits(len(freq) - 1, count_bits)
    prev = 0
    for f in freq:
        encode_number(enc, probs, zigzag(f - prev))
        prev = f


def decode_table(dec: Decoder, probs: NumberModel, count_bits: int) -> list[int]:
    """The cumulative table [0, f0, f0+f1, ..., TABLE_TOTAL]; anything else is a ValueError."""
    n = dec.direct_bits(count_bits) + 1
    cum, prev = [0], 0
    for _ in range(n):
        f = prev + unzigzag(decode_number(dec, probs))
        if f < 0 or cum[-1] + f > TABLE_TOTAL:
            raise ValueError("table run frequency out of range")
        cum.append(cum[-1] + f)
        prev = f
    if cum[-1] != TABLE_TOTAL:
        raise ValueError("table run frequencies do not sum to the table total")
    return cum


def _table_bits(probs: NumberModel, freq: list[int], count_bits: int) -> int:
    enc = Encoder()
    encode_table(enc, probs.copy(), freq, count_bits)
    return 8 * len(enc.finish())


def _plan(probs: NumberModel, values: list[int]) -> tuple[bool, list[int], float]:
    """(bucketed?, the table, estimated bits) of the cheaper table for `values`, a bucketed table's
    extra decoding step counted as EXTRA_STEP_BITS."""
    ks = [symbol_of(v & 0xFF) for v in values]
    best: tuple[bool, list[int], float] | None = None
    for bucketed in (False, True):
        syms = [bucket_of(k)[0] for k in ks] if bucketed else ks
        freq = frequencies(syms)
        body = sum(-c * math.log2(freq[s] / TABLE_TOTAL) for s, c in Counter(syms).items())
        extra = sum(bucket_of(k)[2] for k in ks) if bucketed else 0
        count_bits = BUCKET_COUNT_BITS if bucketed else EXACT_COUNT_BITS
        bits = body + extra + 1 + _table_bits(probs, freq, count_bits)
        slow = sum(1 for k in ks if k >= EXACT_BELOW) if bucketed else 0
        if best is None or bits + EXTRA_STEP_BITS * slow < best[2]:
            best = (bucketed, freq, bits)
    assert best is not None
    return best


def plan_table(probs: NumberModel, values: list[int]) -> tuple[bool, list[int]]:
    """(bucketed?, frequencies) of the table encode_run would send for `values`."""
    bucketed, freq, _ = _plan(probs, values)
    return bucketed, freq


def encode_run(
    enc: Encoder,
    probs: NumberModel,
    values: list[int],
    table: tuple[bool, list[int]] | None = None,
    send: bool = True,
) -> None:
    """The table kind (a direct bit: 1 = bucketed), the table, then each value (int8 or byte): its
    symbol, and in a bucketed table the bits below the top three of k at equal chances. `table`: that
    one instead of the values' own (it must cover them); send=False (format version 4, a run that reuses
    the block's last table): the table is not sent again."""
    bucketed, freq = plan_table(probs, values) if table is None else table
    if send:
        enc.direct_bits(int(bucketed), 1)
        encode_table(enc, probs, freq, BUCKET_COUNT_BITS if bucketed else EXACT_COUNT_BITS)
    cum = [0]
    for f in freq:
        cum.append(cum[-1] + f)
    for v in values:
        k = symbol_of(v & 0xFF)
        s, low, extra = bucket_of(k) if bucketed else (k, 0, 0)
        assert s < len(freq) and freq[s] > 0, "a value outside the reused table"
        enc.symbol(cum[s], freq[s], TABLE_BITS)
        if extra:
            enc.uniform(low, extra)


def read_table(dec: Decoder, probs: NumberModel) -> tuple[bool, list[int]]:
    """(bucketed?, the cumulative table) of a table run's header."""
    bucketed = bool(dec.direct_bits(1))
    return bucketed, decode_table(dec, probs, BUCKET_COUNT_BITS if bucketed else EXACT_COUNT_BITS)


def decode_run(
    dec: Decoder, probs: NumberModel, count: int, table: tuple[bool, list[int]] | None = None
) -> list[int]:
    """`count` bytes of a table run (with `table`: that one, already read, instead of the run's own)."""
    bucketed, cum = read_table(dec, probs) if table is None else table
    out = []
    for _ in range(count):
        s = dec.symbol(cum, TABLE_BITS)
        if bucketed:
            k, extra = bucket_start(s)
            s = k + (dec.uniform(extra) if extra else 0)
        out.append(byte_of(s))
    return out


def estimated_bits(values: list[int]) -> float:
    """What encode_run costs with fresh number probabilities."""
    return _plan([PROB_INIT] * NUMBER_PROBS, values)[2]
