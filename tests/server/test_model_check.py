"""The upload check runs untrusted models in a child process (services/model_check.py): a model that
kills the TFLM reference interpreter, a check that runs out of time or memory, is a 422 and the server
keeps serving; offline-signed packages go through the same check."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.model_edits import SVDF, with_operator
from tinyfleet.device.engine import Engine
from tinyfleet.server.services import model_check
from tinyfleet.server.services.errors import Invalid
from tinyfleet.signing import delta, selftest
from tinyfleet.signing.keys import generate_private_key
from tinyfleet.signing.manifest import ENC_COMPRESSED, ENC_DELTA
from tinyfleet.signing.package import build_package, verify_package

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
MODEL = (VECTORS / "model.tflite").read_bytes()
# Found by mutating model.tflite (tests/vectors/crash/README.md): the C engine accepts it, TFLM aborts.
CRASHER = (VECTORS / "crash" / "tflm_abort.tflite").read_bytes()


def upload(api, body: bytes, version: str = "1.0.0"):
    models = api.ok("GET", "/api/models")
    model_id = models[0]["id"] if models else api.ok("POST", "/api/models", 201, json={"name": "kws"})["id"]
    params = {"version": version, "hardware_class": 1}
    return api.client.post(f"/api/models/{model_id}/versions", params=params, content=body)


def offline(api, model: bytes, **fields) -> tuple[bytes, object]:
    """A package of `model` signed by a release key the server trusts."""
    release = generate_private_key()
    api.ctx.keys.trust_store.add(release)
    fields = {
        "sequence": 5,
        "security_counter": 1,
        "hardware_class": 3,
        "min_runtime_version": "0.1.0",
    } | fields
    return build_package(model, release, name="kws", version="2.0.0", **fields), release


def detail(resp) -> str:
    text: str = resp.json()["detail"]
    assert "\n" not in text and "Traceback" not in text
    return text


def test_a_model_that_kills_the_reference_interpreter_is_422_and_the_server_lives_on(api):
    Engine(CRASHER)  # the engine accepts it: only the reference interpreter dies on it
    resp = upload(api, CRASHER)
    assert resp.status_code == 422
    assert detail(resp) == "model rejected: the model checker crashed (SIGABRT)"
    assert upload(api, MODEL).status_code == 201
    assert api.ok("GET", "/healthz")


def test_a_check_over_its_wall_time_backstop_is_422(api):
    settings = api.ctx.settings
    api.ctx.settings = settings.with_overrides(model_check_wall_seconds=0.001)
    resp = upload(api, MODEL)
    assert resp.status_code == 422
    assert detail(resp) == "model rejected: the model checker did not finish within 0.001 s"
    signed, _ = offline(api, MODEL)
    resp = api.client.post("/api/packages", content=signed)
    assert resp.status_code == 422 and "did not finish within 0.001 s" in detail(resp)
    api.ctx.settings = settings
    assert upload(api, MODEL).status_code == 201


def test_a_check_over_its_memory_limit_is_422(api):
    # below what the worker's imports already hold: the model's first allocations fail
    api.ctx.settings = api.ctx.settings.with_overrides(model_check_memory_mb=64)
    resp = upload(api, MODEL)
    assert resp.status_code == 422
    assert detail(resp) == "model rejected: the model checker ran out of memory (limit 64 MiB)"


def test_uploaded_facts_are_the_engine_and_reference_ones(api):
    pkg = upload(api, MODEL).json()["packages"][0]
    manifest = verify_package(
        api.ok("GET", f"/api/packages/{pkg['id']}/download").content, api.ctx.keys.trust_store
    ).manifest
    seed = model_check.selftest_seed_for(MODEL)
    assert pkg["arena_bytes"] == manifest.arena_bytes == Engine(MODEL).arena_used
    assert manifest.selftest_seed == seed
    assert manifest.selftest_output_sha256 == selftest.expected_output_sha256(MODEL, seed)


def test_offline_package_with_an_unsupported_op_is_refused_like_an_upload(api):
    svdf = with_operator(MODEL, 0, SVDF)
    refusal = detail(upload(api, svdf))
    assert refusal.startswith("the device engine refuses this model: UNSUPPORTED_OP: SVDF")
    signed, _ = offline(api, svdf)
    resp = api.client.post("/api/packages", content=signed)
    assert resp.status_code == 422 and detail(resp) == refusal


def test_offline_package_that_kills_the_reference_interpreter_is_422(api):
    api.ok("POST", "/api/models", 201, json={"name": "kws"})
    signed, _ = offline(api, CRASHER)
    resp = api.client.post("/api/packages", content=signed)
    assert resp.status_code == 422
    assert detail(resp) == "model rejected: the model checker crashed (SIGABRT)"
    good, _ = offline(api, MODEL)
    assert api.ok("POST", "/api/packages", 201, content=good)["signed_by"] == "offline"


def test_offline_package_self_test_must_match_the_reference(api):
    api.ok("POST", "/api/models", 201, json={"name": "kws"})
    seed = 1234
    wrong, _ = offline(api, MODEL, selftest_seed=seed, selftest_output_sha256=hashlib.sha256(b"x").digest())
    resp = api.client.post("/api/packages", content=wrong)
    assert resp.status_code == 422 and "self-test digest differs" in detail(resp)
    right = selftest.expected_output_sha256(MODEL, seed)
    good, _ = offline(api, MODEL, selftest_seed=seed, selftest_output_sha256=right)
    assert api.ok("POST", "/api/packages", 201, content=good)["arena_bytes"] > 0
    # Asked for explicitly (to watch devices fail the self-test and revert), it is stored.
    wrong, _ = offline(api, MODEL, selftest_seed=seed, selftest_output_sha256=hashlib.sha256(b"x").digest(),
                       sequence=6, hardware_class=4)  # fmt: skip
    params = {"allow_selftest_mismatch": "true"}
    assert api.ok("POST", "/api/packages", 201, content=wrong, params=params)["signed_by"] == "offline"


def test_offline_compressed_package_is_decoded_and_checked_delta_refused(api):
    api.ok("POST", "/api/models", 201, json={"name": "kws"})
    packed = delta.encode(MODEL)
    good, _ = offline(api, MODEL, payload=packed, payload_encoding=ENC_COMPRESSED)
    assert api.ok("POST", "/api/packages", 201, content=good)["payload_encoding"] == ENC_COMPRESSED
    svdf = with_operator(MODEL, 0, SVDF)
    bad, _ = offline(api, svdf, sequence=6, payload=delta.encode(svdf), payload_encoding=ENC_COMPRESSED)
    resp = api.client.post("/api/packages", content=bad)
    assert resp.status_code == 422 and "UNSUPPORTED_OP: SVDF" in detail(resp)
    base = (VECTORS / "model_update.tflite").read_bytes()
    patch, _ = offline(
        api,
        MODEL,
        sequence=7,
        payload=delta.encode(MODEL, base),
        payload_encoding=ENC_DELTA,
        delta_base_sha256=hashlib.sha256(base).digest(),
    )
    resp = api.client.post("/api/packages", content=patch)
    assert resp.status_code == 422 and "offline delta packages cannot be checked" in detail(resp)


@pytest.mark.parametrize("name", ["model_large.tflite", "model_two_inputs.tflite"])
def test_checked_in_a_child_same_facts_as_in_process(name):
    model = (VECTORS / name).read_bytes()
    facts = model_check.check_model(model)
    assert facts is not None
    assert facts.arena_bytes == Engine(model).arena_used
    assert facts.selftest_output_sha256 == selftest.expected_output_sha256(model, facts.selftest_seed)


def test_concurrent_checks_each_get_their_own_worker():
    models = [MODEL, CRASHER, MODEL, (VECTORS / "model_two_inputs.tflite").read_bytes()] * 2

    def outcome(model: bytes) -> str:
        try:
            facts = model_check.check_model(model)
        except Invalid as exc:
            return str(exc)
        assert facts is not None
        return facts.model_sha256.hex()

    with ThreadPoolExecutor(max_workers=len(models)) as pool:
        results = list(pool.map(outcome, models))
    crashed = "model rejected: the model checker crashed (SIGABRT)"
    expected = [crashed if m == CRASHER else hashlib.sha256(m).hexdigest() for m in models]
    assert results == expected


# A worker that applies the real worker's limits (model_worker._limit) and then spins, as a crafted model
# that loops in native code would: no model in tests/vectors spins, and the check must not depend on one.
SPINNER = (
    "import json, sys\n"
    "from tinyfleet.server.services.model_worker import _limit\n"
    "request = json.loads(sys.stdin.buffer.readline())\n"
    "_limit(int(request['memory_bytes']), float(request['cpu_seconds']))\n"
    "while True:\n"
    "    pass\n"
)


def test_a_spinning_check_is_stopped_by_its_cpu_limit_not_the_wall_backstop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def spinner() -> subprocess.Popen[bytes]:
        pipe = subprocess.PIPE
        return subprocess.Popen([sys.executable, "-c", SPINNER], stdin=pipe, stdout=pipe, stderr=pipe)

    model_check._spare.close()  # the warm spare is a real worker: the next take() must start a spinner
    monkeypatch.setattr(model_check, "_start_worker", spinner)
    # the wall backstop far beyond the test timeout: only the kernel's SIGXCPU can end this check
    limits = model_check.CheckLimits(seconds=0.001, wall_seconds=3600.0)
    try:
        with pytest.raises(Invalid) as caught:
            model_check.check_model(MODEL, limits=limits)
    finally:
        model_check._spare.close()  # the idle spinner spare: later checks get real workers again
    assert str(caught.value) == "model rejected: the model checker used more than 0.001 s of CPU"
