"""Delta format version 6 (adaptive frequency symbols, PROTOCOL 5.10): numbers and literals round-trip
through the models, counts halve without reaching 0, version 6 streams round-trip and compete in the
default encoder, the committed golden vectors decode and are reproduced, and malformed version 6 streams
raise DeltaError only."""

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
    FREQ_LIMIT,
    NUMBER_INC,
    NUMBER_SYMBOLS,
    Decoder,
    Encoder,
    FreqModel,
    decode_number,
    encode_number,
)

ONLY_V6 = (delta.FORMAT_SYMBOLS,)


def test_numbers_of_every_bit_count_round_trip_across_halvings() -> None:
    rng = random.Random(6)
    values = [0, 1, 2, 3, 2**32 - 1] + [(1 << b) - 1 for b in range(1, 33)] + [1 << b for b in range(32)]
    values += [rng.getrandbits(rng.randrange(1, 33)) for _ in range(3000)]  # enough to halve many times
    enc, model = Encoder(4), FreqModel(NUMBER_SYMBOLS, NUMBER_INC)
    for v in values:
        encode_number(enc, model, v)
    dec, model = Decoder(enc.finish(), 4), FreqModel(NUMBER_SYMBOLS, NUMBER_INC)
    assert [decode_number(dec, model) for _ in values] == values


def test_counts_halve_past_the_limit_and_never_reach_zero() -> None:
    model = FreqModel(16, 2)
    halvings = 0
    for i in range(20_000):
        before = model.total
        model.learn(3 if i % 5 else i % 16)
        halvings += model.total < before
        assert model.total == sum(model.counts) <= FREQ_LIMIT
        assert min(model.counts) >= 1
    assert halvings >= 5
    assert model.counts[3] > model.counts[0]


def test_a_quotient_past_the_total_is_an_error() -> None:
    dec = Decoder(b"\xff" * 8, 4)  # code 0xFFFFFFFF: q = code / (range / total) reaches the total
    with pytest.raises(ValueError):
        dec.freq(FreqModel(3, 1))


@pytest.mark.parametrize("block_log2", [10, 15])
@pytest.mark.parametrize("with_base", [True, False])
def test_version_6_round_trips(block_log2: int, with_base: bool) -> None:
    base = V1_MODEL if with_base else b""
    stream = delta.encode(V2_MODEL, base, block_log2, versions=ONLY_V6)
    assert stream[2] == delta.FORMAT_SYMBOLS
    assert delta.decode(stream, base) == V2_MODEL


def test_random_data_round_trips_in_version_6() -> None:
    rng = random.Random(3)
    for _ in range(30):
        base = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 2000)))
        new = bytearray(base)
        for _ in range(rng.randrange(0, 30)):
            new[rng.randrange(len(new))] = rng.randrange(256)
        new += bytes(rng.randrange(256) for _ in range(rng.randrange(0, 300)))
        for b in (base, b""):
            stream = delta.encode(bytes(new), b, 10, versions=ONLY_V6)
            assert delta.decode(stream, b) == new


def test_the_default_encoder_makes_version_5_and_6_streams() -> None:
    made = {stream[2] for stream, _ in delta.candidates(V2_MODEL, V1_MODEL)}
    assert made == {delta.FORMAT_NUMBERS, delta.FORMAT_SYMBOLS}
    chosen = delta.encode(V2_MODEL, V1_MODEL)
    assert chosen in {stream for stream, _ in delta.candidates(V2_MODEL, V1_MODEL)}


def test_golden_vectors_decode_and_the_generator_still_makes_them() -> None:
    mdv = generator()
    base, t_new = (VECTORS / "base.bin").read_bytes(), (VECTORS / "t_new.bin").read_bytes()
    new = (VECTORS / "t4_new.bin").read_bytes()
    for name, block_log2, b, n in (
        ("t6_delta.bin", 15, base, new),
        ("t6_blk.bin", 10, base, new),
        ("t6_full.bin", 10, b"", t_new),
    ):
        stream = (VECTORS / name).read_bytes()
        assert stream[2] == delta.FORMAT_SYMBOLS
        assert delta.decode(stream, b) == n
        assert mdv.literal_stream(n, b, block_log2, delta.FORMAT_SYMBOLS) == stream, f"{name} not reproduced"


def test_version_6_read_as_version_5_does_not_give_the_model() -> None:
    stream = bytearray((VECTORS / "t6_full.bin").read_bytes())
    new = (VECTORS / "t_new.bin").read_bytes()
    stream[2] = delta.FORMAT_NUMBERS  # the same body with version 5's binary literals and ladder numbers
    with contextlib.suppress(delta.DeltaError):
        assert delta.decode(bytes(stream)) != new


def test_malformed_version_6_streams_raise_delta_error_only() -> None:
    assert_malformed_raise_delta_error_only("t6_blk.bin", (VECTORS / "base.bin").read_bytes())
    assert_malformed_raise_delta_error_only("t6_full.bin", b"")
