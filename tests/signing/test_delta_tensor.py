"""Delta format version 2 (weight runs): round trips, the committed golden vectors, the encoder's choice
between versions, and malformed streams refused with DeltaError only."""

from __future__ import annotations

import random

import pytest

from tests.support.delta_vectors import V1_MODEL, V2_MODEL, VECTORS
from tinyfleet.signing import delta, tensor_coder
from tinyfleet.signing.rangecoder import Decoder, Encoder

ONLY_V2 = (delta.FORMAT_TENSOR,)


def test_every_int8_value_round_trips_in_both_tables() -> None:
    values = list(range(-128, 128)) * 2
    random.Random(1).shuffle(values)
    for table in (tensor_coder.PLAIN, tensor_coder.DIFF):
        enc, models = Encoder(4), tensor_coder.WeightModels()
        for v in values:
            tensor_coder.encode_value(enc, models, table, v, 5)
        dec, models = Decoder(enc.finish(), 4), tensor_coder.WeightModels()
        decoded = [tensor_coder.decode_value(dec, models, table, 5) for _ in values]
        assert [d & 0xFF for d in decoded] == [v & 0xFF for v in values]


def test_weight_tensors_of_a_tflite_model_are_found() -> None:
    tensors = tensor_coder.find_weight_tensors(V1_MODEL)
    assert [t.length for t in tensors] == [1024, 512, 64]
    assert all(t.name.endswith("MatMul") for t in tensors)
    assert tensor_coder.find_weight_tensors(b"not a model at all") == []


@pytest.mark.parametrize("block_log2", [10, 15])
@pytest.mark.parametrize("with_base", [True, False])
def test_version_2_round_trips(block_log2: int, with_base: bool) -> None:
    base = V1_MODEL if with_base else b""
    stream = delta.encode(V2_MODEL, base, block_log2, versions=ONLY_V2)
    assert stream[2] == delta.FORMAT_TENSOR
    assert delta.decode(stream, base) == V2_MODEL


def test_golden_vectors_decode_and_the_encoder_still_makes_them() -> None:
    base, new = (VECTORS / "t_base.bin").read_bytes(), (VECTORS / "t_new.bin").read_bytes()
    runs = tensor_coder.plan_runs(new, base)
    assert runs[0].kind == tensor_coder.DIFF, "the nudged first layer is a diff run"
    for name, block_log2, b in (("t_delta.bin", 15, base), ("t_blk.bin", 10, base), ("t_full.bin", 10, b"")):
        stream = (VECTORS / name).read_bytes()
        assert delta.decode(stream, b) == new
        assert delta.encode(new, b, block_log2, versions=ONLY_V2) == stream, f"{name} no longer reproduced"
    # version 1 streams made before version 2 existed still decode
    old_base = (VECTORS / "base.bin").read_bytes()
    assert delta.decode((VECTORS / "delta.bin").read_bytes(), old_base) == (VECTORS / "new.bin").read_bytes()


def test_encoder_keeps_the_smaller_version() -> None:
    base, new = (VECTORS / "t_base.bin").read_bytes(), (VECTORS / "t_new.bin").read_bytes()
    v1 = delta.encode(new, base, versions=(delta.FORMAT_VERSION,))
    v2 = delta.encode(new, base, versions=ONLY_V2)
    assert v1[2] == 1 and v2[2] == 2
    # asked for versions 1 and 2 only, the smaller is kept (the default adds version 3: test_delta_table.py)
    both = (delta.FORMAT_VERSION, delta.FORMAT_TENSOR)
    assert delta.encode(new, base, versions=both) == min(v1, v2, key=len)


def test_version_2_needs_weight_tensors() -> None:
    with pytest.raises(ValueError, match="int8 weight tensors"):
        delta.encode(b"plain bytes, no model" * 10, versions=ONLY_V2)


def test_malformed_version_2_streams_raise_delta_error_only() -> None:
    base, new = (VECTORS / "t_base.bin").read_bytes(), (VECTORS / "t_new.bin").read_bytes()
    stream = (VECTORS / "t_blk.bin").read_bytes()
    rng = random.Random(5)
    refused = 0
    for at in list(range(6)) + rng.sample(range(6, len(stream)), 120):
        bad = bytearray(stream)
        bad[at] ^= 1 << rng.randrange(8)
        try:
            out = delta.decode(bytes(bad), base)
        except delta.DeltaError:
            refused += 1
        else:
            assert len(out) == len(new)  # a well-formed but wrong stream: the model digest refuses it
    for cut in range(0, len(stream), 97):
        with pytest.raises(delta.DeltaError):
            delta.decode(stream[:cut], base)
    assert refused > 0


def test_float_product_is_one_rounding_and_zero_off_the_normal_range() -> None:
    import numpy as np

    rng = random.Random(3)
    for _ in range(2000):
        a, f = rng.getrandbits(32), rng.getrandbits(32)
        with np.errstate(all="ignore"):  # overflow and NaN are part of what is checked
            expected = np.array([a], np.uint32).view(np.float32) * np.array([f], np.uint32).view(np.float32)
        bits = int(expected.view(np.uint32)[0])
        if not all(0 < (x >> 23) & 0xFF < 255 for x in (a, f, bits)):
            bits = 0
        assert tensor_coder.product(a, f) == bits
    nan, inf, tiny = 0x7FC00000, 0x7F800000, 0x00000001
    assert tensor_coder.product(nan, 0x3F800000) == tensor_coder.product(inf, 0x3F800000) == 0
    assert tensor_coder.product(tiny, 0x3F800000) == 0
    assert tensor_coder.product(0x7F000000, 0x7F000000) == 0  # overflow
    assert tensor_coder.product(0x3F800000, 0x40000000) == 0x40000000  # 1.0 * 2.0


def test_bias_scales_are_found_as_products_of_earlier_scales() -> None:
    products = tensor_coder.find_products(V1_MODEL)
    assert len(products) == 3
    runs = tensor_coder.plan_runs(V1_MODEL, b"")
    assert tensor_coder.PRODUCT in {r.kind for r in runs}
    for r in runs:
        if r.kind == tensor_coder.PRODUCT:
            assert r.start in products and r.disp is not None and r.disp >= r.length
