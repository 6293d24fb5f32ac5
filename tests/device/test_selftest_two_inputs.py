"""The self-test of a model with two inputs (docs/PROTOCOL.md 1.2), the case where signing once drifted
from the device: tinyfleet.signing.selftest, the C engine and the C runtime behind UART frames must all
agree on the golden vector tests/vectors/good_selftest_two_inputs.tfpkg (index.json "selftest_two_inputs")."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import pytest

from tests.support.device_frames import (
    DEVICE,
    activate_selftest_confirm,
    call,
    install,
    new_device,
    ok,
    package,
)
from tests.support.device_frames import state as device_state
from tests.support.paths import VECTORS
from tinyfleet.device import frames
from tinyfleet.device.engine import Engine
from tinyfleet.signing import manifest as mf
from tinyfleet.signing.codes import ErrorCode
from tinyfleet.signing.keys import TrustStore, load_public_key
from tinyfleet.signing.package import verify_package
from tinyfleet.signing.selftest import expected_output_sha256, input_sizes, selftest_inputs

VECTOR: dict[str, Any] = json.loads((VECTORS / "index.json").read_text())["selftest_two_inputs"]
MODEL = (VECTORS / VECTOR["file"]).read_bytes()
SEED: int = VECTOR["seed"]
DIGEST = bytes.fromhex(VECTOR["output_sha256"])


def test_vector_facts() -> None:
    assert hashlib.sha256(MODEL).hexdigest() == VECTOR["sha256"]
    assert input_sizes(MODEL) == VECTOR["input_sizes"] == [3, 8]  # subgraph order, not Keras order
    assert [b.hex() for b in selftest_inputs(SEED, input_sizes(MODEL))] == VECTOR["input_bytes"]
    store = TrustStore([load_public_key(VECTORS / "key_trusted.pub")])
    m = verify_package(package(VECTOR["package"]), store).manifest
    assert (m.selftest_seed, m.selftest_output_sha256) == (SEED, DIGEST)
    bad = mf.parse_unverified(package("selftest_two_inputs_wrong_digest.tfpkg"))
    assert bad.selftest_seed == SEED and bad.selftest_output_sha256 != DIGEST


def test_reference_interpreter_gives_the_vector_digest() -> None:
    pytest.importorskip("tflite_micro")
    assert expected_output_sha256(MODEL, SEED) == DIGEST


def _engine_digest(inputs: list[bytes]) -> bytes:
    engine = Engine(MODEL)
    for index, raw in enumerate(inputs):
        engine.set_input(index, np.frombuffer(raw, dtype=np.int8).reshape(engine.input_info(index).shape))
    engine.invoke()
    return hashlib.sha256(engine.output_bytes(0)).digest()


def test_c_engine_agrees_and_every_input_counts() -> None:
    assert Engine(MODEL).selftest_digest(SEED) == DIGEST
    first, second = selftest_inputs(SEED, input_sizes(MODEL))
    assert _engine_digest([first, second]) == DIGEST
    # The drift this vector guards against: only input 0 filled, or each input restarting the stream.
    assert _engine_digest([first, bytes(len(second))]) != DIGEST
    assert _engine_digest([first, selftest_inputs(SEED, [len(second)])[0]]) != DIGEST


@pytest.fixture
def device() -> Any:
    with new_device() as dev:
        assert install(dev, package(DEVICE["setup_package"])) == 0
        activate_selftest_confirm(dev)
        yield dev


def test_runtime_trial_selftest_passes(device: Any) -> None:
    pkg = package(VECTOR["package"])
    assert install(device, pkg) == 0
    activate_selftest_confirm(device)  # the C runtime recomputed the digest and it matched
    active = device_state(device).active
    assert active is not None and active.sequence == 9 and active.model_sha256.hex() == VECTOR["sha256"]


def test_runtime_refuses_a_wrong_digest(device: Any) -> None:
    before = device_state(device).active
    assert install(device, package("selftest_two_inputs_wrong_digest.tfpkg")) == 0
    ok(device, frames.activate())
    r = call(device, frames.selftest())
    assert r.is_error and r.payload[0] == ErrorCode.SELFTEST_FAILED
    assert device_state(device).active == before


def test_offline_signing_and_server_upload_agree() -> None:
    """The drift: `package build --selftest-seed` and the server's upload check computed different
    digests for a multi-input model. Both now go through tinyfleet.signing.selftest."""
    pytest.importorskip("tflite_micro")
    from tinyfleet.server.services.model_check import check_model
    from tinyfleet.signing.cli import _selftest_digest

    assert _selftest_digest(MODEL, SEED, None) == DIGEST
    facts = check_model(MODEL)
    assert facts is not None
    assert facts.selftest_output_sha256 == _selftest_digest(MODEL, facts.selftest_seed, None)
    assert facts.selftest_output_sha256 == Engine(MODEL).selftest_digest(facts.selftest_seed)
