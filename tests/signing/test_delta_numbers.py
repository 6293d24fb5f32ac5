"""Delta format version 5 (ladder numbers, PROTOCOL 5.8): numbers of every bit-count class round-trip,
version 5 streams round-trip and are what the encoder sends by default, the committed golden vectors
decode and are reproduced, and malformed version 5 streams raise DeltaError only."""

from __future__ import annotations

import contextlib
import random

import pytest

from tests.support.delta_vectors import (
    V1_MODEL,
    V2_MODEL,
    VECTORS,
    assert_malformed_raise_delta_error_only,
    generator,
)
from tinyfleet.signing import delta
from tinyfleet.signing.rangecoder import (
    NUMBER_PROBS,
    PROB_INIT,
    Decoder,
    Encoder,
    decode_number,
    encode_number,
)

ONLY_V5 = (delta.FORMAT_NUMBERS,)
OLDER = (delta.FORMAT_VERSION, delta.FORMAT_TABLE, delta.FORMAT_LAST)


def _edges() -> list[int]:
    values = {0, 1, 2, 3, 2**32 - 1}
    for bits in range(2, 33):
        values |= {1 << (bits - 1), (1 << bits) - 1}
    rng = random.Random(5)
    values |= {rng.getrandbits(rng.randrange(1, 33)) for _ in range(300)}
    return sorted(values)


@pytest.mark.parametrize("ladder", [False, True])
def test_numbers_of_every_class_round_trip(ladder: bool) -> None:
    values = _edges()
    enc = Encoder(4)
    enc.ladder = ladder
    probs = [PROB_INIT] * NUMBER_PROBS
    for v in values:
        encode_number(enc, probs, v)
    dec = Decoder(enc.finish(), 4)
    dec.ladder = ladder
    probs = [PROB_INIT] * NUMBER_PROBS
    assert [decode_number(dec, probs) for _ in values] == values


def test_ladder_numbers_take_fewer_decisions_for_short_copies() -> None:
    def decisions(ladder: bool, values: list[int]) -> int:
        enc = Encoder(4)
        enc.ladder = ladder
        probs = [PROB_INIT] * NUMBER_PROBS
        for v in values:
            encode_number(enc, probs, v)
        return enc.decisions

    lengths = [2, 3, 5, 7, 9, 12] * 10  # copy lengths: classes 0-4 bits
    assert decisions(True, lengths) <= decisions(False, lengths) - 2 * len(lengths)
    wide = [70_000, 1 << 30, 123_456_789]  # 17 bits and more: two equal-chance steps, no direct bits
    assert decisions(True, wide) < decisions(False, wide)


@pytest.mark.parametrize("block_log2", [10, 15])
@pytest.mark.parametrize("with_base", [True, False])
def test_version_5_round_trips(block_log2: int, with_base: bool) -> None:
    base = V1_MODEL if with_base else b""
    stream = delta.encode(V2_MODEL, base, block_log2, versions=ONLY_V5)
    assert stream[2] == delta.FORMAT_NUMBERS
    assert delta.decode(stream, base) == V2_MODEL


def test_the_default_encoder_sends_version_5_or_6_no_larger_than_the_older_choice() -> None:
    for base in (V1_MODEL, b""):
        chosen = delta.encode(V2_MODEL, base)
        older = delta.encode(V2_MODEL, base, versions=OLDER)
        assert chosen[2] in (delta.FORMAT_NUMBERS, delta.FORMAT_SYMBOLS)
        assert delta.decode(chosen, base) == V2_MODEL
        if len(chosen) > len(older) * (1 + delta.SPEED_MARGIN):  # only to meet the speed target (5.9)
            cost = dict(delta.candidates(V2_MODEL, base))[chosen]
            assert (
                cost
                <= delta.SPEED_TARGET * len(V2_MODEL)
                < dict(delta.candidates(V2_MODEL, base, versions=OLDER))[older]
            )
            assert len(chosen) <= len(older) * (1 + delta.SPEED_CAP)


def test_golden_vectors_decode_and_the_generator_still_makes_them() -> None:
    mdv = generator()
    base, t_new = (VECTORS / "base.bin").read_bytes(), (VECTORS / "t_new.bin").read_bytes()
    new = (VECTORS / "t4_new.bin").read_bytes()
    classes: set[int] = set()
    for name, block_log2, b, n in (
        ("t5_delta.bin", 15, base, new),
        ("t5_blk.bin", 10, base, new),
        ("t5_full.bin", 10, b"", t_new),
    ):
        stream = (VECTORS / name).read_bytes()
        assert stream[2] == delta.FORMAT_NUMBERS
        assert delta.decode(stream, b) == n
        made = mdv.literal_stream(n, b, block_log2, delta.FORMAT_NUMBERS, classes)
        assert made == stream, f"{name} no longer reproduced"
    assert classes >= {0, 4, 8, 16, 17}


def test_version_5_read_as_version_4_does_not_give_the_model() -> None:
    stream = bytearray((VECTORS / "t5_full.bin").read_bytes())
    new = (VECTORS / "t_new.bin").read_bytes()
    stream[2] = delta.FORMAT_LAST  # the same body with version 4's numbers
    with contextlib.suppress(delta.DeltaError):
        assert delta.decode(bytes(stream)) != new


def test_malformed_version_5_streams_raise_delta_error_only() -> None:
    assert_malformed_raise_delta_error_only("t5_blk.bin", (VECTORS / "base.bin").read_bytes())
    assert_malformed_raise_delta_error_only("t5_full.bin", b"")
