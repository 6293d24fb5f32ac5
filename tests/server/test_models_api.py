"""Models, versions (tflite upload -> server-signed package), hardware classes, offline packages."""

from __future__ import annotations

from pathlib import Path

import pytest

from tinyfleet.signing.keys import TrustStore, generate_private_key
from tinyfleet.signing.package import build_package, verify_package


@pytest.fixture(scope="module")
def tflite(shared_models: Path) -> bytes:
    return (shared_models / "hello_world_int8.tflite").read_bytes()


def test_create_list_get_update_delete_model(api):
    created = api.ok("POST", "/api/models", 201, json={"name": "kws", "description": "keywords"})
    assert created["name"] == "kws" and created["versions"] == []
    assert [m["name"] for m in api.ok("GET", "/api/models")] == ["kws"]
    assert api.ok("GET", f"/api/models/{created['id']}")["description"] == "keywords"
    assert (
        api.ok("PATCH", f"/api/models/{created['id']}", json={"description": "new"})["description"] == "new"
    )
    api.ok("DELETE", f"/api/models/{created['id']}", 204)
    assert api.ok("GET", "/api/models") == []


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"name": ""}, "body.name"),
        ({"name": "x" * 32}, "body.name"),
        ({"name": "bad name"}, "body.name"),
        ({}, "body.name: Field required"),
        ({"name": "ok", "extra": 1}, "extra"),
    ],
)
def test_invalid_model_is_422_with_clear_message(api, body, fragment):
    resp = api.client.post("/api/models", json=body)
    assert resp.status_code == 422
    assert fragment in resp.json()["detail"]


def test_duplicate_model_and_missing_model(api):
    api.ok("POST", "/api/models", 201, json={"name": "kws"})
    resp = api.client.post("/api/models", json={"name": "kws"})
    assert resp.status_code == 409 and "already exists" in resp.json()["detail"]
    for method, url in (("GET", "/api/models/99"), ("PATCH", "/api/models/99"), ("DELETE", "/api/models/99")):
        resp = api.client.request(method, url, json={"description": "x"})
        assert resp.status_code == 404 and "model 99 not found" in resp.json()["detail"]
    assert api.client.get("/api/models/notanint").status_code == 422


def test_api_token_required(api):
    resp = api.client.get("/api/models", headers={"Authorization": "Bearer wrong"})
    assert resp.status_code == 401 and "API token" in resp.json()["detail"]
    assert api.client.get("/healthz", headers={"Authorization": ""}).status_code == 200


def test_upload_tflite_builds_a_signed_package(api, tflite):
    model = api.ok("POST", "/api/models", 201, json={"name": "hello"})
    mv = api.ok(
        "POST",
        f"/api/models/{model['id']}/versions",
        201,
        params={"version": "1.0.0", "hardware_class": 7},
        content=tflite,
    )
    assert mv["version"] == "1.0.0" and len(mv["packages"]) == 1
    pkg = mv["packages"][0]
    assert pkg["hardware_class"] == 7 and pkg["sequence"] == 1 and pkg["signed_by"] == "server"
    data = api.ok("GET", f"/api/packages/{pkg['id']}/download").content
    store = TrustStore(bytes.fromhex(k["public_key"]) for k in api.ok("GET", "/api/trust-store"))
    verified = verify_package(data, store)
    assert verified.manifest.model_name == "hello" and verified.manifest.hardware_class == 7
    assert verified.payload == tflite
    # another hardware class of the same version, then a new version: sequence keeps rising
    api.ok(
        "POST",
        f"/api/models/{model['id']}/versions",
        201,
        params={"version": "1.0.0", "hardware_class": 8},
        content=tflite,
    )
    mv2 = api.ok(
        "POST",
        f"/api/models/{model['id']}/versions",
        201,
        params={"version": "1.1.0", "hardware_class": 7},
        content=tflite,
    )
    assert mv2["packages"][0]["sequence"] == 3
    versions = api.ok("GET", f"/api/models/{model['id']}/versions")
    assert [v["version"] for v in versions] == ["1.0.0", "1.1.0"]
    assert len(versions[0]["packages"]) == 2
    assert api.ok("GET", f"/api/versions/{mv2['id']}")["id"] == mv2["id"]
    # a model with versions cannot be deleted
    resp = api.client.delete(f"/api/models/{model['id']}")
    assert resp.status_code == 409


def test_upload_invalid_tflite_requests(api, tflite):
    model = api.ok("POST", "/api/models", 201, json={"name": "hello"})
    url = f"/api/models/{model['id']}/versions"
    cases = [
        ({"version": "1.0", "hardware_class": 1}, tflite, 422, "query.version"),
        ({"version": "1.0.0"}, tflite, 422, "query.hardware_class: Field required"),
        ({"version": "1.0.0", "hardware_class": -1}, tflite, 422, "query.hardware_class"),
        ({"version": "1.0.0", "hardware_class": 1}, b"", 422, "empty"),
        ({"version": "1.0.0", "hardware_class": 1}, b"not a flatbuffer at all", 422, "cannot package"),
    ]
    for params, body, status, fragment in cases:
        resp = api.client.post(url, params=params, content=body)
        assert resp.status_code == status, (params, resp.text)
        assert fragment in resp.json()["detail"], resp.text
    api.ok("POST", url, 201, params={"version": "1.0.0", "hardware_class": 1}, content=tflite)
    resp = api.client.post(url, params={"version": "1.0.0", "hardware_class": 1}, content=tflite)
    assert resp.status_code == 409 and "already has a package" in resp.json()["detail"]
    resp = api.client.post(
        "/api/models/42/versions", params={"version": "1.0.0", "hardware_class": 1}, content=tflite
    )
    assert resp.status_code == 404


def test_upload_too_large_is_413(api):
    api.ctx.settings = api.ctx.settings.with_overrides(max_upload_bytes=100)
    model = api.ok("POST", "/api/models", 201, json={"name": "hello"})
    resp = api.client.post(
        f"/api/models/{model['id']}/versions",
        params={"version": "1.0.0", "hardware_class": 1},
        content=b"x" * 101,
    )
    assert resp.status_code == 413 and "limit" in resp.json()["detail"]


def test_offline_signed_package_verified_against_trust_store(api, tflite, tmp_path):
    release = generate_private_key()
    signed = build_package(
        tflite,
        release,
        name="kws",
        version="2.0.0",
        sequence=5,
        security_counter=1,
        hardware_class=3,
        min_runtime_version="0.1.0",
    )
    api.ok("POST", "/api/models", 201, json={"name": "kws"})
    # not trusted yet: refused with the signing error
    resp = api.client.post("/api/packages", content=signed)
    assert resp.status_code == 422 and "UNKNOWN_KEY" in resp.json()["detail"]
    api.ctx.keys.trust_store.add(release)
    pkg = api.ok("POST", "/api/packages", 201, content=signed)
    assert pkg["signed_by"] == "offline" and pkg["version"] == "2.0.0" and pkg["sequence"] == 5
    assert api.ok("GET", f"/api/packages/{pkg['id']}")["sha256"] == pkg["sha256"]
    assert [p["id"] for p in api.ok("GET", "/api/packages")] == [pkg["id"]]
    # tampering, truncation, garbage, replayed sequence, unknown model
    tampered = bytearray(signed)
    tampered[-1] ^= 1
    other = build_package(
        tflite,
        release,
        name="nomodel",
        version="1.0.0",
        sequence=1,
        security_counter=0,
        hardware_class=3,
        min_runtime_version="0.1.0",
    )
    again = build_package(
        tflite,
        release,
        name="kws",
        version="2.0.1",
        sequence=5,
        security_counter=1,
        hardware_class=3,
        min_runtime_version="0.1.0",
    )
    for body, status, fragment in [
        (bytes(tampered), 422, "DIGEST_MISMATCH"),
        (signed[:100], 422, "at least 292 bytes"),
        (b"\x00" * 400, 422, "BAD_MAGIC"),
        (other, 404, "model 'nomodel' not found"),
        (again, 409, "sequence 5"),
    ]:
        resp = api.client.post("/api/packages", content=body)
        assert resp.status_code == status, resp.text
        assert fragment in resp.json()["detail"]


def test_package_download_ranges(api, tflite):
    model = api.ok("POST", "/api/models", 201, json={"name": "hello"})
    mv = api.ok(
        "POST",
        f"/api/models/{model['id']}/versions",
        201,
        params={"version": "1.0.0", "hardware_class": 1},
        content=tflite,
    )
    pid = mv["packages"][0]["id"]
    full = api.client.get(f"/api/packages/{pid}/download")
    assert full.status_code == 200 and full.headers["accept-ranges"] == "bytes"
    data = full.content
    part = api.client.get(f"/api/packages/{pid}/download", headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == data[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{len(data)}"
    tail = api.client.get(f"/api/packages/{pid}/download", headers={"Range": "bytes=-5"})
    assert tail.content == data[-5:]
    open_end = api.client.get(f"/api/packages/{pid}/download", headers={"Range": "bytes=292-"})
    assert open_end.content == data[292:]
    for bad in ("bytes=99999-", "items=1-2", "bytes=5-1", "bytes=-0", "bytes=1-2,4-5"):
        resp = api.client.get(f"/api/packages/{pid}/download", headers={"Range": bad})
        assert resp.status_code == 416, bad
        assert resp.headers["content-range"] == f"bytes */{len(data)}"
    assert api.client.get("/api/packages/pkg-nope/download").status_code == 404
    assert api.client.get("/api/packages/pkg-nope").status_code == 404


def test_hardware_classes(api):
    assert api.ok("GET", "/api/hardware-classes") == []
    api.ok("PUT", "/api/hardware-classes/3", json={"name": "cortex-m4", "chunk_size": 512})
    api.ok("PUT", "/api/hardware-classes/3", json={"name": "cortex-m4f", "chunk_size": 2048})
    hw = {
        "id": 3,
        "name": "cortex-m4f",
        "chunk_size": 2048,
        "slot_size": None,
        "ram_budget": None,
        "model_ram": None,
    }
    assert api.ok("GET", "/api/hardware-classes") == [hw]
    for body in ({"name": "x", "chunk_size": 10}, {"name": "x", "chunk_size": 10**6}, {"chunk_size": 512}):
        resp = api.client.put("/api/hardware-classes/3", json=body)
        assert resp.status_code == 422 and "body." in resp.json()["detail"]
    assert (
        api.client.put("/api/hardware-classes/-1", json={"name": "x", "chunk_size": 512}).status_code == 422
    )


def test_openapi_docs_and_dashboard(api):
    spec = api.ok("GET", "/openapi.json")
    for path in (
        "/api/models",
        "/api/devices",
        "/api/rollouts",
        "/api/telemetry",
        "/api/packages/{package_id}/download",
    ):
        assert path in spec["paths"]
    upload = spec["paths"]["/api/models/{model_id}/versions"]["post"]
    assert "application/octet-stream" in upload["requestBody"]["content"]
    assert api.client.get("/docs").status_code == 200
    page = api.client.get("/", headers={"Authorization": ""})
    assert page.status_code == 200 and "tinyfleet console" in page.text and "/console/js/app.js" in page.text


VECTORS = Path(__file__).resolve().parents[1] / "vectors"


def test_server_sequences_rise_across_models(api):
    """A device refuses a package whose sequence is not above its ACTIVE package's, whatever that one's
    model: the server's sequences rise per signing key across models, A then B then A again."""
    a = api.ok("POST", "/api/models", 201, json={"name": "model-a"})
    b = api.ok("POST", "/api/models", 201, json={"name": "model-b"})

    def upload(model: dict, version: str, name: str) -> dict:
        mv = api.ok(
            "POST",
            f"/api/models/{model['id']}/versions",
            201,
            params={"version": version, "hardware_class": 1},
            content=(VECTORS / name).read_bytes(),
        )
        return mv["packages"][0]

    seqs = [
        upload(a, "1.0.0", "model.tflite")["sequence"],
        upload(b, "1.0.0", "model_update.tflite")["sequence"],
        upload(a, "1.1.0", "model_update.tflite")["sequence"],
        upload(b, "2.0.0", "model.tflite")["sequence"],
    ]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), seqs
    assert seqs[0] == 1
    # An offline package (its own key, time-based sequence) raises the floor for what the server signs
    # next: a device running the offline package would refuse anything at or below its sequence.
    release = generate_private_key()
    api.ctx.keys.trust_store.add(release)
    offline = build_package(
        (VECTORS / "model.tflite").read_bytes(),
        release,
        name="model-b",
        version="3.0.0",
        sequence=1_700_000_000,
        security_counter=0,
        hardware_class=1,
        min_runtime_version="0.1.0",
    )
    api.ok("POST", "/api/packages", 201, content=offline)
    after = upload(a, "1.2.0", "model.tflite")
    assert after["sequence"] == 1_700_000_001 and after["signed_by"] == "server"
    manifest = verify_package(
        api.ok("GET", f"/api/packages/{after['id']}/download").content, api.ctx.keys.trust_store
    ).manifest
    assert manifest.sequence == 1_700_000_001 and manifest.model_name == "model-a"


def test_concurrent_sequence_numbers_are_distinct(api):
    """Uploads that sign at the same time each get their own sequence (the counter row serialises them;
    the first ones race to create it and retry)."""
    import threading
    import time

    from tinyfleet.server.db import session_scope
    from tinyfleet.server.services.packages import next_sequence

    got: list[int] = []
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def take() -> None:
        try:
            start.wait()
            with session_scope(api.ctx.db) as s:
                value = next_sequence(s, "00112233aabbccdd")
                time.sleep(0.05)  # hold the transaction open while the others wait
            got.append(value)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=take) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert sorted(got) == [1, 2, 3, 4, 5, 6]
