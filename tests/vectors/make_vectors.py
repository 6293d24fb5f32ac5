#!/usr/bin/env python3
"""Generate the package test vectors shared by the Python tests and the C runtime's tests.

Run by hand from the repository root, then commit the outputs:

    .venv/bin/python tests/vectors/make_vectors.py            # reuse the committed models
    .venv/bin/python tests/vectors/make_vectors.py --retrain  # retrain the models with TensorFlow first

Everything is deterministic: the keys come from fixed seeds, created_at is fixed, Ed25519 signatures
are deterministic, so re-running gives identical bytes (a retrain may change the models' bytes across
TensorFlow versions, and every package with them). See README.md for the meaning of each file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import struct
import sys
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from tinyfleet.signing import delta as dl  # noqa: E402
from tinyfleet.signing import manifest as mf  # noqa: E402
from tinyfleet.signing._flatbuf import FlatBuffer  # noqa: E402
from tinyfleet.signing.keys import key_id, private_key_from_seed, private_pem, public_hex_line  # noqa: E402
from tinyfleet.signing.package import build_package  # noqa: E402
from tinyfleet.signing.policy import DeviceConfig  # noqa: E402
from tinyfleet.signing.selftest import (  # noqa: E402
    expected_output_sha256,
    input_sizes,
    selftest_input,
    selftest_inputs,
)
from tinyfleet.signing.tflite import estimate_arena_bytes, parse_model  # noqa: E402

CREATED_AT = 1767225600  # 2026-01-01T00:00:00Z
MODEL_NAME = "vector-kws"
SELFTEST_SEED = 0x1234ABCD

DEVICE = {
    "hardware_class": 7,
    "runtime_version": (0 << 16) | (1 << 8) | 0,  # 0.1.0 = TFA_RUNTIME_VERSION
    "ram_budget": 16384,
    "slot_size": 16384,
    "sector_size": 4096,
    "security_floor": 3,
    "active_sequence": 5,
}
ACTIVE = {"sequence": 5, "security_counter": 3}  # what good_active.tfpkg carries
GOOD = {"sequence": 6, "security_counter": 3, "min_runtime_version": "0.1.0"}


# ---------------------------------------------------------------- models (TensorFlow only on --retrain)


def train_models() -> tuple[bytes, bytes]:
    import numpy as np
    import tensorflow as tf

    tf.keras.utils.set_random_seed(1234)
    tf.config.experimental.enable_op_determinism()
    rng = np.random.default_rng(1234)
    centers = rng.normal(0.0, 2.0, size=(4, 8)).astype("float32")
    labels = rng.integers(0, 4, size=2000)
    features = (centers[labels] + rng.normal(0.0, 0.7, size=(2000, 8))).astype("float32")

    def convert(model: tf.keras.Model, inputs: np.ndarray) -> bytes:
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([row[None, :]] for row in inputs[:200])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
        return bytes(converter.convert())

    small = tf.keras.Sequential(
        [
            tf.keras.Input(shape=(8,)),
            tf.keras.layers.Dense(16, activation="relu"),
            tf.keras.layers.Dense(4, activation="softmax"),
        ]
    )
    small.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    small.fit(features, labels, epochs=5, batch_size=64, verbose=0, shuffle=False)

    # Larger than a device slot on purpose (policy TOO_LARGE); trained only one epoch.
    large_features = np.tile(features, (1, 2))
    large = tf.keras.Sequential(
        [
            tf.keras.Input(shape=(16,)),
            tf.keras.layers.Dense(128, activation="relu"),
            tf.keras.layers.Dense(128, activation="relu"),
            tf.keras.layers.Dense(4, activation="softmax"),
        ]
    )
    large.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    large.fit(large_features, labels, epochs=1, batch_size=64, verbose=0, shuffle=False)
    return convert(small, features), convert(large, large_features)


def train_two_input_model() -> bytes:
    """A two-input int8 model (Concatenate -> Dense(8, ReLU) -> Dense(4, softmax)), untrained, fixed seeds:
    the self-test vector for models with several inputs. The inputs are 8 and 3 wide; TFLite orders them
    [3, 8] in the subgraph, the order the self-test fills them in."""
    import numpy as np
    import tensorflow as tf

    tf.keras.utils.set_random_seed(2)
    rng = np.random.default_rng(2)
    layers = tf.keras.layers
    wide = layers.Input((8,), batch_size=1, name="x0")
    narrow = layers.Input((3,), batch_size=1, name="x1")
    hidden = layers.Dense(8, activation="relu")(layers.Concatenate()([wide, narrow]))
    model = tf.keras.Model([wide, narrow], layers.Dense(4, activation="softmax")(hidden))

    def representative() -> object:
        for _ in range(64):
            yield [rng.normal(0, 1, size=(1, n)).astype("float32") for n in (8, 3)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return bytes(converter.convert())


# ---------------------------------------------------------------- helpers


def patch(data: bytes, field: str, value: int | bytes) -> bytes:
    off, size = mf.OFFSETS[field]
    raw = value if isinstance(value, bytes) else value.to_bytes(size, "little")
    assert len(raw) == size, field
    return data[:off] + raw + data[off + size :]


def flip(data: bytes, offset: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ 0x01]) + data[offset + 1 :]


def retrained(model: bytes, seed: int) -> bytes:
    """The model after a small "retraining": about a third of its int8 weights move by one step. The
    flatbuffer structure is untouched, so it stays a valid model (what a delta update typically carries)."""
    rng = random.Random(seed)
    info = parse_model(model)
    buffers = FlatBuffer(model).root().table_vector(4, "buffers")
    out = bytearray(model)
    for t in info.subgraphs[0].tensors:
        if t.dtype != "int8" or t.buffer not in info.constant_buffers:
            continue
        where = buffers[t.buffer].vector(0, 1, "weights")
        assert where is not None
        start, length = where
        for i in range(start, start + length):
            if rng.randrange(3) == 0:
                value = max(-127, min(127, (out[i] ^ 0x80) - 0x80 + rng.choice((-1, 1))))
                out[i] = value & 0xFF
    assert out != model
    return bytes(out)


def corrupted_stream(stream: bytes, base: bytes, new: bytes, want_error: bool) -> bytes:
    """stream with one coded byte (past its first third) changed such that the reference decoder fails
    (want_error) or quietly produces another model of the same size. Deterministic: the first such
    change is taken."""
    start = len(stream) // 3
    for offset in range(start, len(stream)):
        for mask in (0x01, 0x10, 0x80):
            bad = stream[:offset] + bytes([stream[offset] ^ mask]) + stream[offset + 1 :]
            try:
                out = dl.decode(bad, base)
            except dl.DeltaError:
                if want_error:
                    return bad
                continue
            if not want_error and out != new and len(out) == len(new):
                return bad
    raise AssertionError("no suitable corruption found")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--retrain", action="store_true", help="retrain the test models with TensorFlow")
    args = parser.parse_args()

    model_path, large_path = HERE / "model.tflite", HERE / "model_large.tflite"
    if args.retrain or not model_path.exists() or not large_path.exists():
        small, large = train_models()
        model_path.write_bytes(small)
        large_path.write_bytes(large)
    model, large = model_path.read_bytes(), large_path.read_bytes()
    two_path = HERE / "model_two_inputs.tflite"
    if args.retrain or not two_path.exists():
        two_path.write_bytes(train_two_input_model())
    two_inputs = two_path.read_bytes()
    assert len(input_sizes(two_inputs)) == 2, "the two-input model must have two inputs"
    assert len(model) < 4096, f"test model is {len(model)} bytes, keep it under 4 KB"
    assert len(large) > DEVICE["slot_size"], "the large model must not fit a slot under any reading"

    trusted = private_key_from_seed(hashlib.sha256(b"tinyfleet test vector key: trusted").digest())
    untrusted = private_key_from_seed(hashlib.sha256(b"tinyfleet test vector key: untrusted").digest())
    for stem, key in (("key_trusted", trusted), ("key_untrusted", untrusted)):
        (HERE / f"{stem}.pem").write_bytes(private_pem(key))
        (HERE / f"{stem}.pub").write_text(public_hex_line(key), encoding="ascii")

    def build(model_bytes: bytes = model, key=trusted, **overrides: object) -> bytes:  # type: ignore[no-untyped-def]
        fields: dict[str, object] = {
            "name": MODEL_NAME,
            "version": "1.0.0",
            "hardware_class": DEVICE["hardware_class"],
            "created_at": CREATED_AT,
            **GOOD,
        }
        fields.update(overrides)
        return build_package(model_bytes, key, **fields)  # type: ignore[arg-type]

    def resign(package: bytes, change: Callable[[bytes], bytes], key=trusted) -> bytes:  # type: ignore[no-untyped-def]
        body = change(package[: mf.SIGNED_SIZE])
        return mf.sign_body(body, key) + package[mf.MANIFEST_SIZE :]

    good = build()
    digest = expected_output_sha256(model, SELFTEST_SEED)
    vectors: list[tuple[str, bytes, str, str]] = []  # file, bytes, expected error name, description

    def add(name: str, data: bytes, expected: str, description: str) -> None:
        vectors.append((name, data, expected, description))

    # Accepted packages (against device.json after good_active.tfpkg is installed and confirmed).
    add("good.tfpkg", good, "OK", "valid: sequence 6 > 5, security counter = floor, min runtime = device's")
    add(
        "good_selftest.tfpkg",
        build(version="1.0.1", sequence=7, selftest_seed=SELFTEST_SEED, selftest_output_sha256=digest),
        "OK",
        "valid, with a self-test seed and the TFLM reference output digest",
    )
    two_digest = expected_output_sha256(two_inputs, SELFTEST_SEED)
    add(
        "good_selftest_two_inputs.tfpkg",
        build(
            two_inputs,
            version="1.1.0",
            sequence=9,
            selftest_seed=SELFTEST_SEED,
            selftest_output_sha256=two_digest,
        ),
        "OK",
        "valid, two-input model: the self-test fills both inputs from one stream (TFLM reference digest)",
    )
    add(
        "good_edges.tfpkg",
        build(name="n" * 31, version="65535.255.0", sequence=0xFFFFFFFF, arena_bytes=DEVICE["ram_budget"]),
        "OK",
        "valid at the limits: 31-byte name, arena = RAM budget, sequence 2^32-1",
    )

    # Parse layer: length, magic, format, key, signature, ranges, then package size and digest.
    for n in (0, 4, 7):
        add(f"trunc_{n}.tfpkg", good[:n], "TRUNCATED", f"first {n} bytes: shorter than the 8 header bytes")
    for n in (8, 100, 220, 227, 291):
        add(f"trunc_{n}.tfpkg", good[:n], "TRUNCATED", f"first {n} bytes: manifest incomplete")
    add("trunc_292.tfpkg", good[:292], "SIZE_MISMATCH", "manifest only, no payload")
    add(f"trunc_{len(good) - 1}.tfpkg", good[:-1], "SIZE_MISMATCH", "payload one byte short")
    add("short_garbage.tfpkg", b"\x00\xffXY", "TRUNCATED", "4 garbage bytes: length is checked before magic")
    add("bad_magic.tfpkg", b"TFMG" + good[4:], "BAD_MAGIC", "magic 'TFMG'")
    add("bad_magic_tflite.tfpkg", model, "BAD_MAGIC", "a bare .tflite, not a package")
    add("format_v2.tfpkg", patch(good, "format_version", 2), "UNSUPPORTED_FORMAT", "format_version 2")
    add(
        "format_v2_short.tfpkg",
        patch(good, "format_version", 2)[:100],
        "UNSUPPORTED_FORMAT",
        "format_version 2 in a 100-byte file: format is checked before the length",
    )
    add(
        "format_header_size.tfpkg",
        resign(good, lambda b: patch(b, "header_size", 300)),
        "UNSUPPORTED_FORMAT",
        "header_size 300, validly signed",
    )
    add("unknown_key.tfpkg", build(key=untrusted), "UNKNOWN_KEY", "signed by key_untrusted")
    add("unknown_key_id.tfpkg", flip(good, mf.KEY_ID_OFFSET), "UNKNOWN_KEY", "key_id byte flipped")
    add(
        "bad_sig_body.tfpkg",
        flip(good, mf.OFFSETS["sequence"][0]),
        "BAD_SIGNATURE",
        "a signed byte (sequence) flipped",
    )
    add(
        "bad_sig_signature.tfpkg",
        flip(good, mf.SIGNATURE_OFFSET + 10),
        "BAD_SIGNATURE",
        "a signature byte flipped",
    )
    add(
        "bad_sig_before_range.tfpkg",
        patch(good, "flags", 1),
        "BAD_SIGNATURE",
        "flags set without re-signing: the signature is checked before the ranges",
    )
    add(
        "bad_sig_untrusted_signer.tfpkg",
        resign(good, lambda b: b, key=untrusted),
        "BAD_SIGNATURE",
        "trusted key id, signature made by another key",
    )
    add("payload_digest.tfpkg", flip(good, len(good) - 5), "DIGEST_MISMATCH", "a payload byte flipped")
    add("size_extra_byte.tfpkg", good + b"\x00", "SIZE_MISMATCH", "one byte appended")

    name_bytes = MODEL_NAME.encode()
    ranges: list[tuple[str, Callable[[bytes], bytes], str]] = [
        ("reserved0", lambda b: patch(b, "reserved0", 1), "reserved0 = 1"),
        ("reserved1", lambda b: patch(b, "reserved1", 0x100), "reserved1 = 0x100"),
        ("flags", lambda b: patch(b, "flags", 0x80), "flags = 0x80"),
        ("encoding_3", lambda b: patch(b, "payload_encoding", 3), "payload_encoding = 3"),
        ("name_empty", lambda b: patch(b, "model_name", bytes(32)), "empty model_name"),
        (
            "name_not_padded",
            lambda b: patch(b, "model_name", name_bytes.ljust(31, b"\0") + b"x"),
            "a non-NUL byte after the name's NUL (offset 39)",
        ),
        (
            "name_nul_inside",
            lambda b: patch(b, "model_name", b"ab\0cd".ljust(32, b"\0")),
            "NUL inside the name",
        ),
        (
            "name_bad_utf8",
            lambda b: patch(b, "model_name", b"ab\xc3(".ljust(32, b"\0")),
            "name not valid UTF-8",
        ),
        ("name_full", lambda b: patch(b, "model_name", b"N" * 32), "32-byte name with no terminating NUL"),
        (
            "payload_size_0",
            lambda b: patch(patch(b, "payload_size", 0), "model_size", 0),
            "payload_size = model_size = 0",
        ),
        (
            "payload_size_big",
            lambda b: patch(patch(b, "payload_size", (1 << 31) + 1), "model_size", (1 << 31) + 1),
            "payload_size = model_size = 2^31 + 1",
        ),
        (
            "model_size_0",
            lambda b: patch(patch(b, "payload_encoding", 1), "model_size", 0),
            "compressed payload, model_size = 0",
        ),
        (
            "raw_size_differs",
            lambda b: patch(b, "model_size", len(model) + 1),
            "raw: model_size != payload_size",
        ),
        (
            "raw_digest_differs",
            lambda b: patch(b, "model_sha256", bytes(31) + b"\x01"),
            "raw: model_sha256 != payload_sha256",
        ),
        ("delta_base_on_raw", lambda b: patch(b, "delta_base_sha256", b"\x01" * 32), "raw with a delta base"),
        ("delta_without_base", lambda b: patch(b, "payload_encoding", 2), "delta with an all-zero base"),
        (
            "selftest_digest_no_seed",
            lambda b: patch(b, "selftest_output_sha256", b"\x02" * 32),
            "self-test digest with seed 0",
        ),
    ]
    for label, change, description in ranges:
        add(f"range_{label}.tfpkg", resign(good, change), "FIELD_RANGE", description + ", validly signed")

    # Policy layer: authentic packages this device must refuse (against device.json).
    add(
        "policy_wrong_hardware.tfpkg", build(hardware_class=8), "WRONG_HARDWARE", "hardware class 8, device 7"
    )
    add(
        "policy_runtime_too_old.tfpkg",
        build(min_runtime_version="0.2.0"),
        "RUNTIME_TOO_OLD",
        "needs runtime 0.2.0, device runs 0.1.0",
    )
    add(
        "policy_rollback.tfpkg", build(security_counter=2), "ROLLBACK_REFUSED", "security counter 2 < floor 3"
    )
    add("policy_replayed_equal.tfpkg", build(sequence=5), "REPLAYED", "sequence 5 = the active model's")
    add("policy_replayed_older.tfpkg", build(sequence=4), "REPLAYED", "sequence 4 < the active model's")
    add("policy_too_large.tfpkg", build(large), "TOO_LARGE", f"{len(large)}-byte model, slot is 16384 bytes")
    add(
        "policy_arena_too_large.tfpkg",
        build(arena_bytes=DEVICE["ram_budget"] + 1),
        "ARENA_TOO_LARGE",
        "arena one byte above the RAM budget",
    )

    # Self-test layer: authentic and allowed, but the trial inference output differs.
    add(
        "selftest_wrong_digest.tfpkg",
        build(
            sequence=8, selftest_seed=SELFTEST_SEED, selftest_output_sha256=hashlib.sha256(digest).digest()
        ),
        "SELFTEST_FAILED",
        "self-test expected digest is wrong",
    )
    add(
        "selftest_two_inputs_wrong_digest.tfpkg",
        build(
            two_inputs,
            version="1.1.1",
            sequence=10,
            selftest_seed=SELFTEST_SEED,
            selftest_output_sha256=hashlib.sha256(two_digest).digest(),
        ),
        "SELFTEST_FAILED",
        "two-input model, self-test expected digest is wrong",
    )

    codes = {"OK": 0, "SELFTEST_FAILED": 42, "WRONG_BASE": 38, "DELTA_CORRUPT": 160}
    from tinyfleet.signing.errors import ALL_PACKAGE_ERRORS

    codes.update({cls.name: cls.code for cls in ALL_PACKAGE_ERRORS})

    def layer(expected: str) -> str:
        if expected == "OK":
            return "none"
        if expected == "SELFTEST_FAILED":
            return "selftest"
        return "policy" if codes[expected] >= 32 else "parse"

    # Compressed and delta packages (PROTOCOL section 5), kept apart from "vectors": only a device with a
    # decoder can judge them (WRONG_BASE needs the active model, DELTA_CORRUPT the decoder). They update
    # good_active.tfpkg's model to model_update.tflite, with 1 KiB blocks so that a download crosses
    # several resume points.
    update = retrained(model, 2026)
    update_digest = expected_output_sha256(update, SELFTEST_SEED)
    base_sha = hashlib.sha256(model).digest()
    v1, v2 = (dl.FORMAT_VERSION,), (dl.FORMAT_TENSOR,)  # each package pins its delta format version
    v3, v4, v5, v6 = (dl.FORMAT_TABLE,), (dl.FORMAT_LAST,), (dl.FORMAT_NUMBERS,), (dl.FORMAT_SYMBOLS,)
    delta_stream = dl.encode(update, model, block_log2=10, versions=v1)
    full_stream = dl.encode(update, b"", block_log2=10, versions=v1)
    delta_v2_stream = dl.encode(update, model, block_log2=10, versions=v2)
    full_v2_stream = dl.encode(update, b"", block_log2=10, versions=v2)
    delta_v3_stream = dl.encode(update, model, block_log2=10, versions=v3)
    assert dl.decode(delta_v3_stream, model) == update
    delta_v4_stream = dl.encode(update, model, block_log2=10, versions=v4)
    assert delta_v4_stream[2] == dl.FORMAT_LAST and dl.decode(delta_v4_stream, model) == update
    delta_v5_stream = dl.encode(update, model, block_log2=10, versions=v5)
    assert delta_v5_stream[2] == dl.FORMAT_NUMBERS and dl.decode(delta_v5_stream, model) == update
    delta_v6_stream = dl.encode(update, model, block_log2=10, versions=v6)
    assert delta_v6_stream[2] == dl.FORMAT_SYMBOLS and dl.decode(delta_v6_stream, model) == update
    assert dl.decode(delta_v2_stream, model) == update and dl.decode(full_v2_stream) == update
    assert dl.decode(delta_stream, model) == update and dl.decode(full_stream) == update
    update_fields: dict[str, object] = {
        "selftest_seed": SELFTEST_SEED,
        "selftest_output_sha256": update_digest,
    }
    other_base = retrained(model, 7)
    delta_vectors: list[tuple[str, bytes, str, str, str]] = []  # + where the device refuses it

    def add_delta(name: str, data: bytes, expected: str, stage: str, description: str) -> None:
        delta_vectors.append((name, data, expected, stage, description))

    def build_encoded(payload: bytes, encoding: int, base: bytes | None = None) -> bytes:
        return build(
            update, payload=payload, payload_encoding=encoding, delta_base_sha256=base, **update_fields
        )

    add_delta(
        "delta_good.tfpkg",
        build_encoded(delta_stream, dl.ENCODING_DELTA, base_sha),
        "OK",
        "none",
        f"delta from good_active's model to model_update.tflite, {len(delta_stream)} bytes, 1 KiB blocks",
    )
    add_delta(
        "compressed_good.tfpkg",
        build_encoded(full_stream, dl.ENCODING_COMPRESSED),
        "OK",
        "none",
        f"model_update.tflite compressed, {len(full_stream)} bytes, 1 KiB blocks",
    )
    add_delta(
        "delta_v2_good.tfpkg",
        build_encoded(delta_v2_stream, dl.ENCODING_DELTA, base_sha),
        "OK",
        "none",
        f"delta_good's update in delta format version 2 (weight runs), {len(delta_v2_stream)} bytes",
    )
    add_delta(
        "compressed_v2_good.tfpkg",
        build_encoded(full_v2_stream, dl.ENCODING_COMPRESSED),
        "OK",
        "none",
        f"compressed_good's model in delta format version 2 (weight runs), {len(full_v2_stream)} bytes",
    )
    add_delta(
        "delta_v3_good.tfpkg",
        build_encoded(delta_v3_stream, dl.ENCODING_DELTA, base_sha),
        "OK",
        "none",
        f"delta_good's update in delta format version 3 (table runs), {len(delta_v3_stream)} bytes",
    )
    add_delta(
        "delta_v4_good.tfpkg",
        build_encoded(delta_v4_stream, dl.ENCODING_DELTA, base_sha),
        "OK",
        "none",
        f"delta_good's update in delta format version 4 (literal runs), {len(delta_v4_stream)} bytes",
    )
    add_delta(
        "delta_v5_good.tfpkg",
        build_encoded(delta_v5_stream, dl.ENCODING_DELTA, base_sha),
        "OK",
        "none",
        f"delta_good's update in delta format version 5 (ladder numbers), {len(delta_v5_stream)} bytes",
    )
    add_delta(
        "delta_v6_good.tfpkg",
        build_encoded(delta_v6_stream, dl.ENCODING_DELTA, base_sha),
        "OK",
        "none",
        f"delta_good's update in delta format version 6 (frequency symbols), {len(delta_v6_stream)} bytes",
    )
    add_delta(
        "delta_wrong_base.tfpkg",
        build_encoded(
            dl.encode(update, other_base, block_log2=10, versions=v1),
            dl.ENCODING_DELTA,
            hashlib.sha256(other_base).digest(),
        ),
        "WRONG_BASE",
        "begin",
        "validly signed delta against another model than the active one",
    )
    add_delta(
        "delta_corrupt_stream.tfpkg",
        build_encoded(corrupted_stream(delta_stream, model, update, True), dl.ENCODING_DELTA, base_sha),
        "DELTA_CORRUPT",
        "chunk",
        "one coded byte changed so the stream is malformed, validly signed (payload digest matches)",
    )
    add_delta(
        "delta_wrong_output.tfpkg",
        build_encoded(corrupted_stream(delta_stream, model, update, False), dl.ENCODING_DELTA, base_sha),
        "DIGEST_MISMATCH",
        "end",
        "one coded byte changed so the stream decodes to another model, validly signed",
    )

    for old in HERE.glob("*.tfpkg"):
        old.unlink()
    (HERE / "good_active.tfpkg").write_bytes(build(**ACTIVE))
    (HERE / "model_update.tflite").write_bytes(update)
    delta_index = []
    for name, data, expected, stage, description in delta_vectors:
        (HERE / name).write_bytes(data)
        delta_index.append(
            {
                "file": name,
                "expected": expected,
                "code": codes[expected],
                "stage": stage,
                "payload_encoding": data[mf.OFFSETS["payload_encoding"][0]],
                "size": len(data),
                "description": description,
            }
        )
    index = []
    for name, data, expected, description in vectors:
        (HERE / name).write_bytes(data)
        index.append(
            {
                "file": name,
                "expected": expected,
                "code": codes[expected],
                "layer": layer(expected),
                "size": len(data),
                "description": description,
            }
        )

    info = parse_model(model)
    device = {
        **DEVICE,
        "runtime_version_str": mf.runtime_version_str(DEVICE["runtime_version"]),
        "slot_capacity": DeviceConfig.from_json(DEVICE).slot_capacity,
        "trusted_keys": ["key_trusted.pub"],
        "trusted_key_ids": [key_id(trusted).hex()],
        "setup_package": "good_active.tfpkg",
        "setup": "a fresh device with these settings installs, activates and confirms good_active.tfpkg "
        "(sequence 5, security counter 3); that gives security_floor 3 and active_sequence 5",
    }
    (HERE / "device.json").write_text(json.dumps(device, indent=2) + "\n", encoding="utf-8")
    meta = {
        "created_at": CREATED_AT,
        "model_name": MODEL_NAME,
        "model": {
            "file": "model.tflite",
            "size": len(model),
            "sha256": hashlib.sha256(model).hexdigest(),
            "ops": list(info.operators),
            "estimated_arena_bytes": estimate_arena_bytes(info),
        },
        "model_large": {"file": "model_large.tflite", "size": len(large)},
        "selftest": {
            "seed": SELFTEST_SEED,
            "output_sha256": digest.hex(),
            "input_bytes": selftest_input(SELFTEST_SEED, 8).hex(),
        },
        "selftest_two_inputs": {
            "file": "model_two_inputs.tflite",
            "size": len(two_inputs),
            "sha256": hashlib.sha256(two_inputs).hexdigest(),
            "ops": list(parse_model(two_inputs).operators),
            "seed": SELFTEST_SEED,
            "input_sizes": input_sizes(two_inputs),
            "input_bytes": [b.hex() for b in selftest_inputs(SELFTEST_SEED, input_sizes(two_inputs))],
            "output_sha256": two_digest.hex(),
            "package": "good_selftest_two_inputs.tfpkg",
        },
        "vectors": index,
        "model_update": {
            "file": "model_update.tflite",
            "size": len(update),
            "sha256": hashlib.sha256(update).hexdigest(),
            "selftest_output_sha256": update_digest.hex(),
        },
        "delta_vectors": delta_index,
    }
    (HERE / "index.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    lines = [f"{v['file']} {v['code']} {v['layer']}" for v in index]
    (HERE / "index.txt").write_text("\n".join(lines) + "\n", encoding="ascii")
    (HERE / "device.txt").write_text(
        "".join(f"{k} {DEVICE[k]}\n" for k in DEVICE) + f"slot_capacity {device['slot_capacity']}\n",
        encoding="ascii",
    )
    assert struct.calcsize("<I") == 4
    print(
        f"wrote {len(index)} vectors + {len(delta_index)} delta vectors, model {len(model)} bytes, "
        f"large model {len(large)} bytes"
    )


if __name__ == "__main__":
    main()
