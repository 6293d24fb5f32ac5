"""Delta format version 4 (literal runs, PROTOCOL 5.7): runs that reuse their block's last table round-trip,
the committed golden vectors decode and are reproduced, older versions and tableless blocks refuse kind 7,
and malformed version 4 streams raise DeltaError only."""

from __future__ import annotations

import itertools
import random

import pytest

from tests.support.delta_vectors import V1_MODEL, V2_MODEL, VECTORS, generator
from tinyfleet.signing import delta, tensor_coder
from tinyfleet.signing.delta_parser import _Parser
from tinyfleet.signing.rangecoder import Encoder, encode_number

ONLY_V4 = (delta.FORMAT_LAST,)


@pytest.mark.parametrize("block_log2", [10, 15])
@pytest.mark.parametrize("with_base", [True, False])
def test_version_4_round_trips(block_log2: int, with_base: bool) -> None:
    base = V1_MODEL if with_base else b""
    stream = delta.encode(V2_MODEL, base, block_log2, versions=ONLY_V4)
    assert stream[2] == delta.FORMAT_LAST
    assert delta.decode(stream, base) == V2_MODEL


def test_literal_runs_cover_literal_stretches_and_leave_weight_runs_alone() -> None:
    runs = tensor_coder.plan_runs(V2_MODEL, b"", tables=True)
    planned = delta.literal_runs(_Parser(V2_MODEL, b""), 10, runs)
    literal = [r for r in planned if r.kind == tensor_coder.TABLE_LAST]
    assert literal and all(r in planned for r in runs)
    for a, b in itertools.pairwise(planned):
        assert a.start + a.length <= b.start  # no overlaps
    assert all(r.start // 1024 == (r.start + r.length - 1) // 1024 for r in literal)  # inside a block


def test_golden_vectors_decode_and_the_generator_still_makes_them() -> None:
    mdv = generator()
    base, t_new = (VECTORS / "base.bin").read_bytes(), (VECTORS / "t_new.bin").read_bytes()
    new = (VECTORS / "t4_new.bin").read_bytes()
    assert (base, new) == mdv.make_literal_pair()
    for name, block_log2, b, n in (
        ("t4_delta.bin", 15, base, new),
        ("t4_blk.bin", 10, base, new),
        ("t4_full.bin", 10, b"", t_new),
    ):
        stream = (VECTORS / name).read_bytes()
        assert stream[2] == delta.FORMAT_LAST
        assert delta.decode(stream, b) == n
        assert mdv.literal_stream(n, b, block_log2) == stream, f"{name} no longer reproduced"


def test_older_version_decoders_refuse_literal_runs() -> None:
    stream = bytearray((VECTORS / "t4_full.bin").read_bytes())
    stream[2] = delta.FORMAT_TABLE  # the same body read as version 3: kind 7 is unknown there
    with pytest.raises(delta.DeltaError):
        delta.decode(bytes(stream))


def test_a_run_reusing_a_table_before_any_in_its_block_is_refused() -> None:
    # one block of 8 bytes whose first op is a kind 7 run (is_match 1, is_rep 0, is_tensor 1, kind 7)
    enc, models = Encoder(4), delta._Models()
    for probs, bit in ((models.is_match, 1), (models.is_rep, 0), (models.is_tensor, 1)):
        enc.bit(probs, 0, bit)
    enc.tree(models.weights.kind, tensor_coder.KIND_BITS, tensor_coder.TABLE_LAST)
    encode_number(enc, models.new_len, 7)
    body = enc.finish()
    stream = b"TD" + bytes((delta.FORMAT_LAST, 0, 10, 4, 8, 0, len(body))) + body
    with pytest.raises(delta.DeltaError, match="reuses a table"):
        delta.decode(stream)


def test_malformed_version_4_streams_raise_delta_error_only() -> None:
    rng = random.Random(4)
    for name, b in (("t4_delta.bin", (VECTORS / "base.bin").read_bytes()), ("t4_full.bin", b"")):
        good = (VECTORS / name).read_bytes()
        for _ in range(120):
            bad = bytearray(good)
            at = rng.randrange(6, len(bad))
            bad[at] ^= 1 << rng.randrange(8)
            try:
                out = delta.decode(bytes(bad), b)
            except delta.DeltaError:
                continue
            assert len(out) > 0  # an undetected flip decodes to some model of the right size
        for cut in range(0, len(good), 211):
            with pytest.raises(delta.DeltaError):
                delta.decode(good[:cut], b)


def test_the_encoder_keeps_a_stream_within_the_speed_margin_or_the_cap() -> None:
    # within SPEED_MARGIN of its smallest candidate, or estimated fast enough and within SPEED_CAP; never
    # more than SPEED_CAP above the smallest stream of any single version (version 2 is not a candidate)
    for new, base in ((V2_MODEL, V1_MODEL), (V2_MODEL, b"")):
        sizes = [len(delta.encode(new, base, versions=(v,))) for v in delta.FORMATS]
        made = dict(delta.candidates(new, base))
        chosen = delta.encode(new, base)
        assert chosen in made
        near = len(chosen) <= min(len(s) for s in made) * (1 + delta.SPEED_MARGIN)
        assert near or made[chosen] <= delta.SPEED_TARGET * len(new)
        assert len(chosen) <= min(sizes) * (1 + delta.SPEED_CAP)
        assert delta.decode(chosen, base) == new
