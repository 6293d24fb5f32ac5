"""The committed test vectors (tests/vectors) give exactly the error index.json promises, at its layer."""

from __future__ import annotations

import json

import pytest

from tests.support.paths import VECTORS
from tinyfleet.signing import errors
from tinyfleet.signing import manifest as mf
from tinyfleet.signing.keys import TrustStore, load_public_key
from tinyfleet.signing.package import verify_package
from tinyfleet.signing.policy import DeviceConfig, check_policy
from tinyfleet.signing.tflite import parse_model

INDEX = json.loads((VECTORS / "index.json").read_text())
DEVICE_JSON = json.loads((VECTORS / "device.json").read_text())
DEVICE = DeviceConfig.from_json(DEVICE_JSON)
STORE = TrustStore(load_public_key(VECTORS / name) for name in DEVICE_JSON["trusted_keys"])


def outcome(data: bytes) -> tuple[int, str]:
    """(code, layer) of the first refusal, as the device would order its checks."""
    try:
        verified = verify_package(data, STORE)
    except errors.PackageError as exc:
        return exc.code, "parse"
    try:
        check_policy(verified.manifest, DEVICE)
    except errors.PolicyError as exc:
        return exc.code, "policy"
    return 0, "none"


@pytest.mark.parametrize("vector", INDEX["vectors"], ids=[v["file"] for v in INDEX["vectors"]])
def test_vector_gives_its_expected_error(vector: dict[str, object]) -> None:
    data = (VECTORS / str(vector["file"])).read_bytes()
    assert len(data) == vector["size"]
    code, layer = outcome(data)
    if vector["layer"] == "selftest":  # authentic and allowed; only the trial inference can catch it
        assert (code, layer) == (0, "none")
        return
    assert (code, layer) == (vector["code"], vector["layer"])
    if code:
        cls = errors.ERROR_BY_CODE[code]
        assert cls.name == vector["expected"]


def test_index_txt_matches_index_json() -> None:
    lines = (VECTORS / "index.txt").read_text().splitlines()
    assert lines == [f"{v['file']} {v['code']} {v['layer']}" for v in INDEX["vectors"]]


def test_every_error_and_layer_is_covered() -> None:
    names = {v["expected"] for v in INDEX["vectors"]}
    wanted = {cls.name for cls in errors.ALL_PACKAGE_ERRORS} | {"OK", "SELFTEST_FAILED"}
    assert wanted <= names
    truncations = [v for v in INDEX["vectors"] if v["expected"] == "TRUNCATED"]
    assert len(truncations) >= 5


def test_setup_package_brings_a_fresh_device_to_the_described_state() -> None:
    active = verify_package((VECTORS / DEVICE_JSON["setup_package"]).read_bytes(), STORE).manifest
    fresh = DeviceConfig(**{**DEVICE.__dict__, "security_floor": 0, "active_sequence": None})
    check_policy(active, fresh)
    assert active.sequence == DEVICE.active_sequence and active.security_counter == DEVICE.security_floor


def test_test_models_are_valid_and_small() -> None:
    model = (VECTORS / "model.tflite").read_bytes()
    info = parse_model(model)
    assert len(model) < 4096 and info.inputs[0].dtype == "int8" and info.outputs[0].dtype == "int8"
    assert INDEX["model"]["ops"] == list(info.operators)
    assert len((VECTORS / "model_large.tflite").read_bytes()) > DEVICE.slot_size


def test_selftest_vector_carries_the_reference_digest() -> None:
    m = mf.parse((VECTORS / "good_selftest.tfpkg").read_bytes(), STORE)
    assert m.selftest_seed == INDEX["selftest"]["seed"]
    assert m.selftest_output_sha256.hex() == INDEX["selftest"]["output_sha256"]


def test_untrusted_key_is_what_signed_unknown_key_vector() -> None:
    untrusted = TrustStore([load_public_key(VECTORS / "key_untrusted.pub")])
    assert verify_package((VECTORS / "unknown_key.tfpkg").read_bytes(), untrusted).manifest.sequence == 6
