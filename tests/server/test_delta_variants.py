"""Payload variants chosen per device (raw, compressed, delta against the reported active model), their
cache, the raw fallback after WRONG_BASE, bytes-sent accounting, and the engine check at upload."""

from __future__ import annotations

import hashlib
import time

import pytest
from sqlmodel import Session, select

from tests.support.model_edits import LSTM, with_operator
from tests.support.paths import SHARED_MODELS
from tests.support.server_scripted import ScriptedDevice
from tinyfleet.server.models import PackageVariant
from tinyfleet.server.services import variants as varsvc
from tinyfleet.server.services.messages import DeviceMessages
from tinyfleet.signing import delta
from tinyfleet.signing.keys import TrustStore, generate_private_key, public_raw
from tinyfleet.signing.package import build_package, verify_package

MODELS = SHARED_MODELS
PAIRS = MODELS / "pairs"


class Setup:
    def __init__(self, api) -> None:  # type: ignore[no-untyped-def]
        self.api = api
        self.ctx = api.ctx
        self.now = time.time()
        self.devices: dict[str, ScriptedDevice] = {}
        self.messages = DeviceMessages(
            self.ctx.db,
            default_chunk_size=1024,
            stats=self.ctx.stats,
            clock=lambda: self.now,
            served=self.ctx.rollout_driver.served,
        )
        model = api.ok("POST", "/api/models", 201, json={"name": "speech"})
        self.model_id = model["id"]
        self.v1_bytes = (PAIRS / "micro_speech.0.tflite").read_bytes()
        self.v2_bytes = (PAIRS / "micro_speech.2.tflite").read_bytes()
        self.v1 = self.upload("1.0.0", self.v1_bytes)
        self.v2 = self.upload("2.0.0", self.v2_bytes)
        self.trust = TrustStore(bytes.fromhex(k["public_key"]) for k in api.ok("GET", "/api/trust-store"))

    def upload(self, version: str, data: bytes, status: int = 201):  # type: ignore[no-untyped-def]
        return self.api.ok(
            "POST",
            f"/api/models/{self.model_id}/versions",
            status,
            params={"version": version, "hardware_class": 1},
            content=data,
        )

    @staticmethod
    def sha(version: dict) -> str:
        return version["packages"][0]["model_sha256"]

    def add(self, device_id: str, active_sha: str | None) -> ScriptedDevice:
        self.api.ok("POST", "/api/devices", 201, json={"id": device_id, "hardware_class": 1})
        dev = ScriptedDevice(
            device_id,
            1,
            self.messages.handle,
            self.trust,
            slots=[active_sha, None],
            active=0 if active_sha else None,
            seqs=[self.v1["packages"][0]["sequence"] if active_sha else 0, 0],
        )
        self.devices[device_id] = dev
        dev.come_online()
        return dev

    def desired(self, device_id: str) -> dict:
        from tinyfleet.server.models import Device

        with Session(self.ctx.db) as s:
            device = s.get(Device, device_id)
            assert device is not None
            return device.desired or {}

    def step(self, rounds: int = 2) -> None:
        for _ in range(rounds):
            self.now += 1
            self.ctx.rollout_driver.tick(self.now)
            for dev in self.devices.values():
                dev.follow(self.desired(dev.device_id))
            self.ctx.rollout_driver.tick(self.now)

    def rollout(self, version: dict, **body) -> dict:  # type: ignore[no-untyped-def]
        body = {"name": "r", "model_version_id": version["id"], "start": True, "max_concurrent": 50, **body}
        return self.api.ok("POST", "/api/rollouts", 201, json=body)

    def actions(self, rid: int, **params) -> list[dict]:  # type: ignore[no-untyped-def]
        return self.api.ok("GET", f"/api/rollouts/{rid}/actions", params=params)

    def variant_rows(self) -> list[PackageVariant]:
        with Session(self.ctx.db) as s:
            return list(s.exec(select(PackageVariant)))


@pytest.fixture
def setup(api, shared_models) -> Setup:  # type: ignore[no-untyped-def]
    return Setup(api)


def test_upload_fills_arena_and_selftest_from_the_engine(setup):
    from tinyfleet.device.engine import Engine
    from tinyfleet.signing.selftest import expected_output_sha256

    with Session(setup.ctx.db) as s:
        from tinyfleet.server.models import PackageBlob

        blob = s.get(PackageBlob, setup.v2["packages"][0]["id"])
        assert blob is not None
        manifest = verify_package(bytes(blob.data), setup.trust).manifest
    assert manifest.selftest_seed != 0
    assert manifest.selftest_output_sha256 == expected_output_sha256(setup.v2_bytes, manifest.selftest_seed)
    assert manifest.arena_bytes == Engine(setup.v2_bytes).arena_used


def test_model_with_unsupported_op_is_refused_at_upload(setup):
    svdf = MODELS / "keyword_scrambled_8bit.tflite"
    if not svdf.exists():
        pytest.skip("keyword_scrambled_8bit.tflite not found")
    # the engine runs the keyword model whole; with its QUANTIZE code (13) made an LSTM it does not
    resp = setup.api.client.post(
        f"/api/models/{setup.model_id}/versions",
        params={"version": "3.0.0", "hardware_class": 1},
        content=with_operator(svdf.read_bytes(), 13, LSTM),
    )
    assert resp.status_code == 422
    assert "UNSUPPORTED_OP: UNIDIRECTIONAL_SEQUENCE_LSTM (builtin 44" in resp.json()["detail"]
    versions = [v["version"] for v in setup.api.ok("GET", f"/api/models/{setup.model_id}/versions")]
    assert "3.0.0" not in versions


def test_devices_on_v1_get_one_shared_signed_delta(setup):
    for i in range(5):
        setup.add(f"dev-{i}", setup.sha(setup.v1))
    r = setup.rollout(setup.v2)
    setup.step()
    done = setup.api.ok("GET", f"/api/rollouts/{r['id']}")
    assert done["state"] == "completed", done
    raw = setup.v2["packages"][0]
    actions = setup.actions(r["id"])
    assert {a["payload_encoding"] for a in actions} == {2}
    assert len({a["sent_package_id"] for a in actions}) == 1  # one variant shared by the five devices
    for a in actions:
        assert a["raw_size"] == raw["size"] and a["sent_size"] < raw["size"] // 10
        assert a["bytes_sent"] == a["sent_size"]  # every chunk served exactly once
    assert done["transfer"]["bytes_sent"] == sum(a["bytes_sent"] for a in actions)
    assert done["transfer"]["raw_bytes"] == 5 * raw["size"]
    assert done["transfer"]["encodings"] == {"delta": 5}
    assert done["transfer"]["waves"][0]["actions"] == 5
    # one compressed + one delta row: the cache is per (package, base), not per device
    rows = setup.variant_rows()
    assert sorted((v.base_sha256, v.status) for v in rows) == sorted(
        [("", "ready"), (setup.sha(setup.v1), "ready")]
    )
    delta_row = next(v for v in rows if v.base_sha256)
    assert delta_row.data is not None
    package = verify_package(delta_row.data, setup.trust)
    m = package.manifest
    assert (m.payload_encoding, m.delta_base_sha256.hex()) == (2, setup.sha(setup.v1))
    assert (m.sequence, m.security_counter, m.model_sha256.hex()) == (
        raw["sequence"],
        raw["security_counter"],
        setup.sha(setup.v2),
    )
    assert delta.decode(package.payload, setup.v1_bytes) == setup.v2_bytes
    assert all(d.encodings == [2] and d.active_sha() == setup.sha(setup.v2) for d in setup.devices.values())


def test_unknown_base_gets_no_delta(setup):
    stranger = setup.add("dev-x", hashlib.sha256(b"a model this server never saw").hexdigest())
    fresh = setup.add("dev-new", None)
    r = setup.rollout(setup.v2)
    setup.step()
    by_device = {a["device_id"]: a for a in setup.actions(r["id"])}
    raw = setup.v2["packages"][0]["size"]
    for device_id in ("dev-x", "dev-new"):
        a = by_device[device_id]
        # the smallest whole-model payload: compressed when it beats raw (micro_speech does), never a delta
        assert a["payload_encoding"] in (0, 1) and a["sent_size"] <= raw
        assert a["state"] == "confirmed"
    assert stranger.encodings == fresh.encodings == [by_device["dev-x"]["payload_encoding"]]
    assert all(not v.base_sha256 for v in setup.variant_rows())


def test_wrong_base_falls_back_to_raw_in_the_same_action(setup):
    dev = setup.add("dev-0", setup.sha(setup.v1))
    dev.decode = lambda encoding, base, payload: None if encoding == 2 else payload  # type: ignore[method-assign]
    r = setup.rollout(setup.v2)
    setup.step(rounds=3)
    (a,) = setup.actions(r["id"])
    assert a["state"] == "confirmed", a
    assert a["payload_encoding"] == 0 and a["sent_package_id"] == setup.v2["packages"][0]["id"]
    assert a["fallback_reason"].startswith("WRONG_BASE (38)")
    assert a["fallback_bytes"] > 0 and a["bytes_sent"] == a["fallback_bytes"] + a["sent_size"]
    assert dev.encodings == [2, 0] and dev.active_sha() == setup.sha(setup.v2)
    assert setup.api.ok("GET", f"/api/rollouts/{r['id']}")["state"] == "completed"


def test_offline_signed_package_is_sent_as_uploaded(setup):
    key = generate_private_key()
    setup.ctx.keys.trust_store.add(public_raw(key))
    setup.trust.add(public_raw(key))
    data = build_package(
        setup.v2_bytes,
        key,
        name="speech",
        version="4.0.0",
        sequence=10,
        security_counter=0,
        hardware_class=1,
        min_runtime_version="0.1.0",
    )
    pkg = setup.api.ok("POST", "/api/packages", 201, content=data)
    version = setup.api.ok("GET", f"/api/versions/{pkg['model_version_id']}")
    setup.add("dev-0", setup.sha(setup.v1))
    r = setup.rollout(version)
    setup.step()
    (a,) = setup.actions(r["id"])
    assert a["payload_encoding"] == 0 and a["sent_package_id"] == pkg["id"] and a["state"] == "confirmed"
    assert setup.variant_rows() == []


def test_choose_prefers_the_smallest_ready_variant(setup):
    with Session(setup.ctx.db) as s:
        from tinyfleet.server.models import Package

        pkg = s.get(Package, setup.v2["packages"][0]["id"])
        assert pkg is not None
        choice, missing = varsvc.choose(s, pkg, setup.sha(setup.v1), setup.ctx.keys)
        assert choice is None and missing == ["", setup.sha(setup.v1)]
        choice, missing = varsvc.choose(s, pkg, setup.sha(setup.v1), None)  # no server key: as stored
        assert choice is not None and choice.package_id == pkg.id and missing == []
    builder = varsvc.VariantBuilder(setup.ctx.db, setup.ctx.keys)
    builder.request(pkg.id, "")
    builder.request(pkg.id, "")  # merged with the first
    builder.request(pkg.id, setup.sha(setup.v1))
    assert builder.run_pending() == 2 and builder.built == 2
    with Session(setup.ctx.db) as s:
        pkg = s.get(Package, setup.v2["packages"][0]["id"])
        assert pkg is not None
        on_v1, _ = varsvc.choose(s, pkg, setup.sha(setup.v1), setup.ctx.keys)
        fresh, _ = varsvc.choose(s, pkg, None, setup.ctx.keys)
    assert on_v1 is not None and on_v1.encoding == 2 and on_v1.base_sha256 == setup.sha(setup.v1)
    assert fresh is not None and fresh.encoding == 1 and fresh.size < pkg.size  # compressed beats raw
    builder.request(pkg.id, "")
    assert builder.run_pending() == 1 and builder.built == 2  # already cached: nothing encoded again


def test_builder_thread_prepares_variants_when_the_rollout_starts(setup):
    for i in range(3):
        setup.add(f"dev-{i}", setup.sha(setup.v1))
    setup.ctx.variants.start()
    try:
        r = setup.rollout(setup.v2)
        deadline = time.monotonic() + 60
        while len(setup.variant_rows()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(setup.variant_rows()) == 2
        setup.step()
    finally:
        setup.ctx.variants.stop()
    assert setup.ctx.variants.built == 2
    assert setup.api.ok("GET", f"/api/rollouts/{r['id']}")["transfer"]["encodings"] == {"delta": 3}


def test_rollback_by_reinstall_sends_a_delta_of_the_old_model(setup):
    for i in range(2):
        setup.add(f"dev-{i}", setup.sha(setup.v1))
    r = setup.rollout(setup.v2)
    setup.step()
    lost = setup.devices["dev-1"]
    lost.slots[1 - (lost.active or 0)] = None  # the other slot no longer holds v1: no revert possible
    lost.publish("reported", lost.reported())
    setup.api.ok("POST", f"/api/rollouts/{r['id']}/rollback")
    setup.step(rounds=3)
    by_device = {a["device_id"]: a for a in setup.actions(r["id"], purpose="rollback")}
    assert by_device["dev-0"]["operation"] == "revert" and by_device["dev-0"]["sent_package_id"] is None
    back = by_device["dev-1"]
    assert back["operation"] == "install" and back["payload_encoding"] == 2 and back["state"] == "confirmed"
    assert setup.api.ok("GET", f"/api/rollouts/{r['id']}")["state"] == "rolled_back"
    assert lost.active_sha() == setup.sha(setup.v1) and lost.encodings == [2, 2]


def test_refused_delta_during_rollback_is_resent_raw(setup):
    dev = setup.add("dev-0", setup.sha(setup.v1))
    r = setup.rollout(setup.v2)
    setup.step()
    dev.slots[1 - (dev.active or 0)] = None
    dev.publish("reported", dev.reported())
    dev.decode = lambda encoding, base, payload: None if encoding == 2 else payload  # type: ignore[method-assign]
    setup.api.ok("POST", f"/api/rollouts/{r['id']}/rollback")
    setup.step(rounds=3)
    (back,) = setup.actions(r["id"], purpose="rollback")
    assert back["state"] == "confirmed" and back["payload_encoding"] == 0, back
    assert back["fallback_reason"].startswith("WRONG_BASE (38)")
    assert dev.encodings == [2, 2, 0] and dev.active_sha() == setup.sha(setup.v1)
    assert setup.api.ok("GET", f"/api/rollouts/{r['id']}")["state"] == "rolled_back"


def test_cli_shows_bytes_sent_and_payload(setup, monkeypatch):
    import io

    from rich.console import Console

    from tinyfleet.server import cli

    for i in range(2):
        setup.add(f"dev-{i}", setup.sha(setup.v1))
    r = setup.rollout(setup.v2)
    setup.step()
    out = io.StringIO()
    monkeypatch.setattr(cli.client, "console", Console(file=out, width=220))  # tables print through it
    done = setup.api.ok("GET", f"/api/rollouts/{r['id']}")
    cli._rollout_table("rollout", [done])
    cli._print_actions("actions", setup.actions(r["id"]))
    text = out.getvalue()
    raw_kib = f"{2 * setup.v2['packages'][0]['size'] / 1024:.1f} KiB raw"
    assert "sent" in text and raw_kib in text, text
    assert text.count("delta") == 2
