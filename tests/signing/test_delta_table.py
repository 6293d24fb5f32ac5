"""Delta format version 3 (table runs, PROTOCOL 5.6): the table coder round-trips every value in exact and
bucketed tables, version 3 streams round-trip, the committed golden vectors decode and are reproduced,
the encoder prefers version 3 when it is about as small, and malformed streams raise DeltaError only."""

from __future__ import annotations

import random

import pytest

from tests.support.delta_vectors import V1_MODEL, V2_MODEL, VECTORS, generator
from tinyfleet.signing import delta, table_coder, tensor_coder
from tinyfleet.signing.rangecoder import NUMBER_PROBS, PROB_INIT, Decoder, Encoder

ONLY_V3 = (delta.FORMAT_TABLE,)


def test_buckets_cover_every_zigzag_value_once() -> None:
    seen = set()
    for k in range(256):
        bucket, low, extra = table_coder.bucket_of(k)
        assert bucket < 1 << table_coder.BUCKET_COUNT_BITS and low < 1 << extra
        assert table_coder.bucket_start(bucket) == (k - low, extra)
        seen.add((bucket, low))
    assert len(seen) == 256
    assert [table_coder.byte_of(table_coder.symbol_of(b)) for b in range(256)] == list(range(256))


def _round_trip(values: list[int]) -> tuple[list[int], set[int]]:
    enc = Encoder(4)
    table_coder.encode_run(enc, [PROB_INIT] * NUMBER_PROBS, values)
    dec = Decoder(enc.finish(), 4)
    used: set[int] = set()
    real = table_coder.decode_table

    def spy(dec: Decoder, probs: list[int], count_bits: int) -> list[int]:
        used.add(count_bits)
        return real(dec, probs, count_bits)

    table_coder.decode_table = spy
    try:
        out = table_coder.decode_run(dec, [PROB_INIT] * NUMBER_PROBS, len(values))
    finally:
        table_coder.decode_table = real
    return out, used


def test_table_runs_round_trip_every_byte_in_exact_and_bucketed_tables() -> None:
    rng = random.Random(5)
    every = list(range(256)) * 3
    rng.shuffle(every)
    peaked = [round(rng.gauss(0, 30)) & 0xFF for _ in range(20000)]  # a large tensor: exact table
    small = [round(rng.gauss(0, 40)) & 0xFF for _ in range(64)]  # a small one: bucketed
    modes = set()
    for values in (every, peaked, small, [7] * 100, [0x80, 0x7F]):
        out, used = _round_trip(values)
        assert out == values
        modes |= used
    assert modes == {table_coder.EXACT_COUNT_BITS, table_coder.BUCKET_COUNT_BITS}


def test_frequencies_sum_to_the_total_and_keep_every_used_symbol() -> None:
    rng = random.Random(9)
    for n in (1, 2, 255, 5000):
        symbols = [min(255, int(rng.expovariate(0.05))) for _ in range(n)]
        freq = table_coder.frequencies(symbols)
        assert sum(freq) == table_coder.TABLE_TOTAL
        assert all(freq[s] >= 1 for s in set(symbols))


@pytest.mark.parametrize("block_log2", [10, 15])
@pytest.mark.parametrize("with_base", [True, False])
def test_version_3_round_trips(block_log2: int, with_base: bool) -> None:
    base = V1_MODEL if with_base else b""
    stream = delta.encode(V2_MODEL, base, block_log2, versions=ONLY_V3)
    assert stream[2] == delta.FORMAT_TABLE
    assert delta.decode(stream, base) == V2_MODEL


def test_golden_vectors_decode_and_the_generator_still_makes_them() -> None:
    mdv = generator()
    base, new = (VECTORS / "t_base.bin").read_bytes(), (VECTORS / "t_new.bin").read_bytes()
    modes: set[bool] = set()
    for name, block_log2, b in (
        ("t3_delta.bin", 15, base),
        ("t3_blk.bin", 10, base),
        ("t3_full.bin", 10, b""),
    ):
        stream = (VECTORS / name).read_bytes()
        assert stream[2] == delta.FORMAT_TABLE
        assert delta.decode(stream, b) == new
        assert mdv.table_stream(new, b, block_log2, modes) == stream, f"{name} no longer reproduced"
    assert modes == {False, True}


def test_encoder_prefers_version_3_within_the_speed_margin() -> None:
    # a model compressed alone: weights as table runs, at most SPEED_MARGIN above the smallest stream
    smallest = min(
        len(delta.encode(V2_MODEL, versions=(v,))) for v in (delta.FORMAT_VERSION, delta.FORMAT_TENSOR)
    )
    chosen = delta.encode(V2_MODEL, versions=(delta.FORMAT_VERSION, delta.FORMAT_TABLE))
    assert chosen[2] == delta.FORMAT_TABLE
    assert len(chosen) <= smallest * (1 + delta.SPEED_MARGIN)
    runs = tensor_coder.plan_runs(V2_MODEL, b"", tables=True, speed=True)
    assert {r.kind for r in runs} & set(tensor_coder.TABLE_KINDS)


def test_version_2_decoders_refuse_table_kinds() -> None:
    stream = bytearray((VECTORS / "t3_full.bin").read_bytes())
    stream[2] = delta.FORMAT_TENSOR  # the same body read as version 2: kind 5 is unknown there
    with pytest.raises(delta.DeltaError):
        delta.decode(bytes(stream))


def test_malformed_version_3_streams_raise_delta_error_only() -> None:
    base, new = (VECTORS / "t_base.bin").read_bytes(), (VECTORS / "t_new.bin").read_bytes()
    rng = random.Random(3)
    for name, b in (("t3_delta.bin", base), ("t3_full.bin", b"")):
        good = (VECTORS / name).read_bytes()
        for _ in range(150):
            bad = bytearray(good)
            at = rng.randrange(6, len(bad))
            bad[at] ^= 1 << rng.randrange(8)
            try:
                out = delta.decode(bytes(bad), b)
            except delta.DeltaError:
                continue
            assert len(out) == len(new)  # an undetected flip decodes to some model of the right size
        for cut in range(0, len(good), 97):
            with pytest.raises(delta.DeltaError):
                delta.decode(good[:cut], b)
