"""The delta encoder's priced parse (delta_parser.plan, delta_prices): prices agree with what the range
coder spends, planned streams decode and are no larger than greedy ones, replayed parses decode, and a
long copy is one op."""

from __future__ import annotations

import random

import pytest

from tests.support.delta_vectors import V1_MODEL, V2_MODEL
from tinyfleet.signing import delta
from tinyfleet.signing.delta_parser import _Copy, _Parser
from tinyfleet.signing.delta_prices import NumberPrices, Prices
from tinyfleet.signing.rangecoder import (
    NUMBER_INC,
    NUMBER_PROBS,
    NUMBER_SYMBOLS,
    PROB_INIT,
    Encoder,
    FreqModel,
)
from tinyfleet.signing.rangecoder import encode_number as _encode_number

PRICED = (delta.FORMAT_NUMBERS, delta.FORMAT_SYMBOLS)


def _skewed(rng: random.Random, count: int) -> list[int]:
    """Mostly short numbers, some long: the models adapt, so a price read from the wrong entry shows."""
    return [rng.getrandbits(rng.choice((1, 2, 2, 3, 3, 3, 5, 9, 14, 20))) for _ in range(count)]


@pytest.mark.parametrize("kind", ["tree", "ladder", "freq"])
def test_number_prices_add_up_to_the_coded_size(kind: str) -> None:
    enc = Encoder(4)
    enc.ladder = kind == "ladder"
    probs = FreqModel(NUMBER_SYMBOLS, NUMBER_INC) if kind == "freq" else [PROB_INIT] * NUMBER_PROBS
    priced = 0.0
    for value in _skewed(random.Random(3), 3000):
        priced += NumberPrices(probs, enc.ladder).price(value)  # the price before the model moves
        _encode_number(enc, probs, value)
    coded = len(enc.finish())
    assert abs(coded - priced / 8) <= 0.01 * coded + 4


@pytest.mark.parametrize("version", [delta.FORMAT_NUMBERS, delta.FORMAT_SYMBOLS])
def test_literal_prices_add_up_to_the_coded_size(version: int) -> None:
    rng = random.Random(4)
    enc = Encoder(4)
    models = delta._Models(version)
    priced = 0.0
    for _ in range(4000):
        match = rng.randrange(256) if rng.random() < 0.8 else None
        byte = (
            match if match is not None and rng.random() < 0.4 else rng.choice((0, 1, 255, rng.randrange(256)))
        )
        priced += Prices(models, True, True).literal(byte, match)
        delta._encode_literal(enc, models.literal, byte, match)
    coded = len(enc.finish())
    assert abs(coded - priced / 8) <= 0.01 * coded + 4


@pytest.mark.parametrize("version", PRICED)
@pytest.mark.parametrize("block_log2", [10, 15])
def test_planned_streams_decode_and_are_no_larger_than_greedy(version: int, block_log2: int) -> None:
    parser = _Parser(V2_MODEL, V1_MODEL)
    greedy, _ = delta._encode_stream(parser, block_log2, 4, version, [])
    planned, _ = delta._encode_stream(parser, block_log2, 4, version, [], scripts={})
    assert delta.decode(planned, V1_MODEL) == V2_MODEL
    assert len(planned) <= len(greedy)


def test_other_rates_replay_the_parse_and_decode() -> None:
    parser = _Parser(V2_MODEL, V1_MODEL)
    scripts: dict[int, list[delta.Op]] = {}
    first, _ = delta._encode_stream(parser, 10, 3, delta.FORMAT_SYMBOLS, [], scripts=scripts)
    assert len(scripts) > 1 and all(scripts.values())  # a parse per block
    again, _ = delta._encode_stream(parser, 10, 5, delta.FORMAT_SYMBOLS, [], scripts=scripts)
    assert again[5] == 5 and again != first
    assert delta.decode(again, V1_MODEL) == V2_MODEL


def test_an_unchanged_stretch_is_one_copy_and_a_changed_byte_a_literal() -> None:
    rng = random.Random(9)
    base = bytes(rng.randrange(256) for _ in range(3000))
    new = bytearray(base)
    new[1000] ^= 0x55
    parser = _Parser(bytes(new), base)
    models = delta._Models(delta.FORMAT_SYMBOLS)
    reps = [(0, 0)] * delta.REPS

    def prices() -> Prices:
        return Prices(models, True, True)

    ops: list[delta.Op] = []
    pos = 0
    while pos < len(new):
        planned = parser.plan(pos, len(new), reps, 0, prices)
        for op in planned:
            pos += 1 if op is None else op.length
        ops += planned
    assert ops == [_Copy("rep", 1000, 0), None, _Copy("rep", len(new) - 1001, 0)]
