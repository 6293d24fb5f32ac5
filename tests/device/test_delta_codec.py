"""Delta format: the Python encoder round-trips through the Python reference decoder and through the C
streaming decoder (host library), in any chunking and across simulated reboots."""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import random
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.paths import REPO
from tinyfleet.signing import delta
from tinyfleet.signing.rangecoder import NUMBER_SYMBOLS, FreqModel

ROOT = REPO
LIB = ROOT / "agent_firmware" / "build" / "host" / "libtinyfleet_agent.so"


@pytest.fixture(scope="module")
def lib() -> ctypes.CDLL:
    subprocess.run(["make", "-s", "-C", str(ROOT / "agent_firmware"), "host"], check=True)
    handle = ctypes.CDLL(str(LIB))
    handle.tfa_host_delta_apply.restype = ctypes.c_int
    handle.tfa_host_delta_state_size.restype = ctypes.c_uint32
    return handle


def c_decode(
    lib: ctypes.CDLL, stream: bytes, base: bytes, out_len: int, chunk: int, reboot: int = 0
) -> bytes:
    out = ctypes.create_string_buffer(out_len)
    rc = lib.tfa_host_delta_apply(
        base, len(base), stream, len(stream), out, out_len, ctypes.c_uint32(chunk), ctypes.c_uint32(reboot)
    )
    if rc != 0:
        raise delta.DeltaError(f"C decoder returned {rc}")
    return out.raw


def mutate(base: bytes, rng: random.Random) -> bytes:
    """A plausible model update: some bytes nudged, a run inserted, a run deleted."""
    data = bytearray(base)
    for _ in range(rng.randrange(0, 20)):
        i = rng.randrange(len(data))
        data[i] = (data[i] + rng.choice((-3, -1, 1, 2))) & 0xFF
    at = rng.randrange(len(data))
    data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40)))
    cut = rng.randrange(len(data))
    del data[cut : cut + rng.randrange(0, 30)]
    return bytes(data) or b"\x00"


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=1, max_size=3000), st.integers(0, 2**32 - 1))
def test_python_round_trip(base: bytes, seed: int) -> None:
    new = mutate(base, random.Random(seed))
    assert delta.decode(delta.encode(new, base), base) == new
    assert delta.decode(delta.encode(new)) == new


@settings(max_examples=40, deadline=None)
@given(st.binary(min_size=1, max_size=5000), st.integers(0, 2**32 - 1), st.sampled_from([1, 7, 256, 1024]))
def test_c_decoder_matches_in_any_chunking(lib: ctypes.CDLL, base: bytes, seed: int, chunk: int) -> None:
    new = mutate(base, random.Random(seed))
    stream = delta.encode(new, base, block_log2=10)
    assert c_decode(lib, stream, base, len(new), chunk) == new
    assert c_decode(lib, stream, base, len(new), chunk, reboot=2) == new


@settings(max_examples=40, deadline=None)
@given(st.binary(min_size=1, max_size=5000), st.integers(0, 2**32 - 1), st.sampled_from([1, 7, 256, 1024]))
def test_c_decoder_matches_format_4_literal_runs(
    lib: ctypes.CDLL, base: bytes, seed: int, chunk: int
) -> None:
    # version 4 only: every stretch of literals is a literal run, later ones reusing their block's table
    new = mutate(base, random.Random(seed))
    stream = delta.encode(new, base, block_log2=10, versions=(delta.FORMAT_LAST,))
    assert stream[2] == delta.FORMAT_LAST and delta.decode(stream, base) == new
    assert c_decode(lib, stream, base, len(new), chunk) == new
    assert c_decode(lib, stream, base, len(new), chunk, reboot=2) == new


@settings(max_examples=40, deadline=None)
@given(st.binary(min_size=1, max_size=5000), st.integers(0, 2**32 - 1), st.sampled_from([1, 7, 256, 1024]))
def test_c_decoder_matches_format_5_ladder_numbers(
    lib: ctypes.CDLL, base: bytes, seed: int, chunk: int
) -> None:
    # version 5 only, with and without a base: every number (copies, runs, tables) a ladder number
    new = mutate(base, random.Random(seed))
    for b in (base, b""):
        stream = delta.encode(new, b, block_log2=10, versions=(delta.FORMAT_NUMBERS,))
        assert stream[2] == delta.FORMAT_NUMBERS and delta.decode(stream, b) == new
        assert c_decode(lib, stream, b, len(new), chunk) == new
        assert c_decode(lib, stream, b, len(new), chunk, reboot=2) == new


@settings(max_examples=40, deadline=None)
@given(st.binary(min_size=1, max_size=5000), st.integers(0, 2**32 - 1), st.sampled_from([1, 7, 256, 1024]))
def test_c_decoder_matches_format_6_symbols(lib: ctypes.CDLL, base: bytes, seed: int, chunk: int) -> None:
    # version 6 only, with and without a base: literals as adaptive nibbles, numbers' bit counts as symbols
    new = mutate(base, random.Random(seed))
    for b in (base, b""):
        stream = delta.encode(new, b, block_log2=10, versions=(delta.FORMAT_SYMBOLS,))
        assert stream[2] == delta.FORMAT_SYMBOLS and delta.decode(stream, b) == new
        assert c_decode(lib, stream, b, len(new), chunk) == new
        assert c_decode(lib, stream, b, len(new), chunk, reboot=2) == new


def test_c_decoder_halves_version_6_counts_as_python_does(
    lib: ctypes.CDLL, monkeypatch: pytest.MonkeyPatch
) -> None:
    # one 64 KiB block of short repeats and fresh bytes: thousands of literals and copy numbers, so both
    # the literal and the number models pass their limit and halve several times
    rng = random.Random(8)
    pieces = [bytes(rng.randrange(256) for _ in range(rng.randrange(4, 9))) for _ in range(60)]
    new = b"".join(rng.choice(pieces) + bytes(rng.randrange(256) for _ in range(rng.randrange(0, 3)))
                   for _ in range(9000))[:60_000]  # fmt: skip
    halved: dict[int, int] = {}
    learn = FreqModel.learn

    def spy(model: FreqModel, s: int) -> None:
        before = model.total
        learn(model, s)
        if model.total < before:
            halved[len(model.counts)] = halved.get(len(model.counts), 0) + 1

    monkeypatch.setattr(FreqModel, "learn", spy)
    stream = delta.encode(new, b"", block_log2=16, versions=(delta.FORMAT_SYMBOLS,))
    monkeypatch.undo()
    assert halved.get(16, 0) >= 2 and halved.get(NUMBER_SYMBOLS, 0) >= 2, halved
    assert delta.decode(stream) == new
    assert c_decode(lib, stream, b"", len(new), 1000) == new
    assert c_decode(lib, stream, b"", len(new), 333, reboot=1) == new


@pytest.mark.parametrize("prefix", ["t5", "t6"])
def test_c_and_python_agree_on_corrupted_version_5_and_6_streams(lib: ctypes.CDLL, prefix: str) -> None:
    # single-byte flips (every third byte) of the golden streams: both refuse, or both decode the same bytes
    vectors = ROOT / "agent_firmware" / "tests" / "vectors" / "delta"
    base = (vectors / "base.bin").read_bytes()
    for name, b, n in ((f"{prefix}_blk.bin", base, "t4_new.bin"), (f"{prefix}_full.bin", b"", "t_new.bin")):
        good = (vectors / name).read_bytes()
        size = len((vectors / n).read_bytes())
        for at in range(0, len(good), 3):
            bad = bytearray(good)
            bad[at] ^= 0xA5
            try:
                expected: bytes | None = delta.decode(bytes(bad), b)
            except delta.DeltaError:
                expected = None
            try:
                got: bytes | None = c_decode(lib, bytes(bad), b, size, 256)
            except delta.DeltaError:
                got = None
            assert got == expected, f"{name}: flip at {at}"


def test_c_decoder_refuses_literal_runs_outside_version_4_or_before_a_table(lib: ctypes.CDLL) -> None:
    from tinyfleet.signing import tensor_coder
    from tinyfleet.signing.rangecoder import Encoder, encode_number

    vectors = ROOT / "agent_firmware" / "tests" / "vectors" / "delta"
    good = (vectors / "t4_full.bin").read_bytes()
    new = (vectors / "t_new.bin").read_bytes()
    assert c_decode(lib, good, b"", len(new), 256) == new
    with pytest.raises(delta.DeltaError):  # the same body read as version 3: kind 7 is unknown there
        c_decode(lib, good[:2] + bytes((delta.FORMAT_TABLE,)) + good[3:], b"", len(new), 256)
    # an 8-byte model whose first op is a kind 7 run: no table read yet in its block
    enc, models = Encoder(4), delta._Models()
    for probs, bit in ((models.is_match, 1), (models.is_rep, 0), (models.is_tensor, 1)):
        enc.bit(probs, 0, bit)
    enc.tree(models.weights.kind, tensor_coder.KIND_BITS, tensor_coder.TABLE_LAST)
    encode_number(enc, models.new_len, 7)
    body = enc.finish()
    stream = b"TD" + bytes((delta.FORMAT_LAST, 0, 10, 4, 8, 0, len(body))) + body
    with pytest.raises(delta.DeltaError):
        c_decode(lib, stream, b"", 8, 64)


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=0, max_size=400))
def test_garbage_streams_are_refused_cleanly(lib: ctypes.CDLL, garbage: bytes) -> None:
    base = bytes(range(256)) * 4
    with contextlib.suppress(delta.DeltaError):  # a valid header for a 16-byte model, then garbage
        assert len(delta.decode(b"TD\x01\x01\x0a\x04\x10\x80\x08" + garbage, base)) == 16
    try:
        out = c_decode(lib, garbage, base, 16, 64)
    except delta.DeltaError:
        return
    assert len(out) == 16  # decoded "something": the runtime's final SHA-256 is what refuses it


def test_decoder_state_fits_in_8_kib(lib: ctypes.CDLL) -> None:
    assert lib.tfa_host_delta_state_size() <= 8 * 1024


def test_smallest_payload_picks_the_fewest_bytes() -> None:
    rng = random.Random(1)
    noise = bytes(rng.randrange(256) for _ in range(2000))
    assert delta.smallest_payload(noise).encoding == delta.ENCODING_RAW
    text = b"tinyfleet " * 300
    assert delta.smallest_payload(text).encoding == delta.ENCODING_COMPRESSED
    new = noise[:1000] + b"\x01\x02" + noise[1000:]
    chosen = delta.smallest_payload(new, noise)
    assert chosen.encoding == delta.ENCODING_DELTA and len(chosen.data) < 60


def test_header_errors_are_clear() -> None:
    with pytest.raises(delta.DeltaError, match="bad magic"):
        delta.decode(b"XX\x01\x00\x0f\x04\x01\x00\x00")
    with pytest.raises(delta.DeltaError, match="shorter than its header"):
        delta.decode(b"TD")
    stream = delta.encode(b"hello world" * 10, b"hello")
    with pytest.raises(delta.DeltaError, match="expects a base of 5 bytes"):
        delta.decode(stream, b"hell")
    with pytest.raises(ValueError, match="block size"):
        delta.encode(b"x", block_log2=4)


@pytest.mark.parametrize(
    ("base_name", "new_name"),
    [
        ("hello_world_int8.0", "hello_world_int8.1"),
        ("hello_world_int8.1", "hello_world_int8.2"),
        ("micro_speech.0", "micro_speech.2"),
    ],
)
def test_real_model_pairs_decode_bit_exact_in_c(
    lib: ctypes.CDLL, shared_models: Path, base_name: str, new_name: str
) -> None:
    base = (shared_models / "pairs" / f"{base_name}.tflite").read_bytes()
    new = (shared_models / "pairs" / f"{new_name}.tflite").read_bytes()
    for b in (base, b""):
        stream = delta.encode(new, b)
        assert len(stream) < len(new) // 2 or not b
        out = c_decode(lib, stream, b, len(new), 1024, reboot=3)
        assert hashlib.sha256(out).digest() == hashlib.sha256(new).digest()
