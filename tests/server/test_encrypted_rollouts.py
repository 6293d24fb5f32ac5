"""Encrypted rollouts (issue 18, PROTOCOL 6) on the server: device X25519 keys at provisioning, rollouts
marked encrypted, one encrypted copy per package variant, the content key wrapped per device at send
time and kept in the database. The end-to-end test runs a real control plane, a real Mosquitto and the
real database (SQLite and PostgreSQL) and plays the device with the Python crypto: it unwraps the key
from its desired state, fetches the ciphertext over the chunk protocol and decrypts it."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, col, select

from tests.support.paths import REPO
from tests.support.server_scripted import MqttLink, ScriptedDevice
from tinyfleet.server.models import Device, EncryptedPackage, KeyWrap
from tinyfleet.server.services import encrypted as encsvc
from tinyfleet.server.services.messages import DeviceMessages
from tinyfleet.signing import delta
from tinyfleet.signing.codes import ErrorCode
from tinyfleet.signing.encryption import (
    EncryptionError,
    chacha20_xor,
    generate_device_keypair,
    public_key_of,
    unwrap_content_key,
)
from tinyfleet.signing.errors import SigningError
from tinyfleet.signing.keys import TrustStore
from tinyfleet.signing.manifest import MANIFEST_SIZE
from tinyfleet.signing.package import verify_package

MODEL = REPO / "examples" / "vibration-1.0.0.tflite"
MODEL_SHA = hashlib.sha256(MODEL.read_bytes()).hexdigest()


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def open_package(sealed: bytes, wrap_b64: str, private: bytes, trust: TrustStore) -> bytes:
    """What a device does with an encrypted package: verify it (signature over the flag and the
    ciphertext digest), unwrap the content key, decrypt, decode; returns the model."""
    verified = verify_package(sealed, trust)
    assert verified.manifest.flags & 1, "the manifest says encrypted"
    key = unwrap_content_key(base64.b64decode(wrap_b64), private, sealed[:MANIFEST_SIZE])
    payload = chacha20_xor(key, verified.payload)
    model = payload if verified.manifest.payload_encoding == 0 else delta.decode(payload)
    assert hashlib.sha256(model).digest() == verified.manifest.model_sha256
    return model


def _install_done(dev: ScriptedDevice, desired: dict[str, Any], sequence: int) -> None:
    dev.status(desired["action_id"], "verifying")
    dev.slots[0], dev.seqs[0], dev.active = desired["model_sha256"], sequence, 0
    dev.publish("reported", dev.reported())
    dev.status(desired["action_id"], "confirmed")


# ----- the whole path on a real server, broker and database -------------------------------------------


@pytest.mark.slow  # a real stack started twice
def test_encrypted_rollout_end_to_end_and_across_a_restart(mosquitto, db_url: str, tmp_path: Path) -> None:
    from tinyfleet.server.stack import run_stack

    data_dir = tmp_path / "server"
    settings = {"database_url": db_url, "data_dir": data_dir, "tick_seconds": 0.2}
    links: list[MqttLink] = []
    try:
        with run_stack(mosquitto.url, **settings) as stack, stack.client() as c:
            model = c.post("/api/models", json={"name": "vibration"}).json()
            resp = c.post(
                f"/api/models/{model['id']}/versions",
                params={"version": "1.0.0", "hardware_class": 1},
                content=MODEL.read_bytes(),
            )
            assert resp.status_code == 201, resp.text
            version = resp.json()
            trust = TrustStore(bytes.fromhex(k["public_key"]) for k in c.get("/api/trust-store").json())

            private: dict[str, bytes] = {}
            devices: dict[str, ScriptedDevice] = {}
            for device_id in ("enc-0", "enc-1"):
                made = c.post("/api/devices", json={"id": device_id, "hardware_class": 1}).json()
                private[device_id] = base64.b64decode(made["encryption_key"])
                # the server kept exactly the public half of what it handed out
                stored = c.get(f"/api/devices/{device_id}").json()["encryption_public_key"]
                assert (
                    stored
                    == public_key_of(private[device_id]).hex()
                    == made["device"]["encryption_public_key"]
                )
                link = MqttLink(mosquitto.host, mosquitto.port, device_id)
                links.append(link)
                assert link.connected.wait(10)
                devices[device_id] = ScriptedDevice(device_id, 1, link.send, trust)
                devices[device_id].come_online()
            wait_for(lambda: all(d["online"] for d in c.get("/api/devices").json()), 30, "devices online")

            resp = c.post(
                "/api/rollouts",
                json={"name": "enc", "model_version_id": version["id"], "start": True, "encrypted": True},
            )
            assert resp.status_code == 201, resp.text
            rollout = resp.json()
            assert rollout["encrypted"] is True
            wait_for(lambda: all(k.desired and k.desired.get("content_key") for k in links), 60, "desired")

            sealed_ids = set()
            for link in links:
                desired = link.desired
                assert desired is not None and desired["operation"] == "install"
                dev = devices[link.device_id]
                sealed = dev.fetch(desired["package_id"], desired["package_size"], desired["chunk_size"])
                sealed_ids.add(desired["package_id"])
                # ciphertext on the wire: the model's bytes appear nowhere in it
                assert MODEL.read_bytes()[64:192] not in sealed
                model = open_package(sealed, desired["content_key"], private[link.device_id], trust)
                assert hashlib.sha256(model).hexdigest() == MODEL_SHA == desired["model_sha256"]
                # another device's key does not open this device's wrap (the tag is checked first)
                other = private["enc-1" if link.device_id == "enc-0" else "enc-0"]
                wrap = base64.b64decode(desired["content_key"])
                with pytest.raises(EncryptionError):
                    unwrap_content_key(wrap, other, sealed[:MANIFEST_SIZE])
                with pytest.raises(EncryptionError):
                    unwrap_content_key(wrap, generate_device_keypair()[0], sealed[:MANIFEST_SIZE])
                # a tampered ciphertext no longer matches the signed manifest's payload digest
                tampered = bytearray(sealed)
                tampered[MANIFEST_SIZE + 10] ^= 0x01
                manifest = verify_package(sealed, trust).manifest
                assert hashlib.sha256(tampered[MANIFEST_SIZE:]).digest() != manifest.payload_sha256
                with pytest.raises(SigningError):
                    verify_package(bytes(tampered), trust)
                _install_done(dev, desired, manifest.sequence)
            assert len(sealed_ids) == 1, "one encrypted copy shared by both devices"
            assert links[0].desired["content_key"] != links[1].desired["content_key"]  # type: ignore[index]
            wait_for(
                lambda: c.get(f"/api/rollouts/{rollout['id']}").json()["state"] == "completed",
                60,
                "rollout completed",
            )
            before = {link.device_id: link.desired["content_key"] for link in links}  # type: ignore[index]
            counts = {link.device_id: link.desired_count for link in links}
            (sealed_id,) = sealed_ids

        # A restarted control plane on the same database gives each device the same wrap: it is read
        # from the database, not made again (a new wrap would differ: its ephemeral key is random).
        with run_stack(mosquitto.url, **settings) as stack:
            for link in links:  # the gateway republishes the stored desired states on connect
                wait_for(lambda link=link: link.desired_count > counts[link.device_id], 30, "republish")
                assert link.desired is not None and link.desired["content_key"] == before[link.device_id]
            with Session(stack.ctx.db) as s:
                for device_id, key in before.items():
                    device = s.get(Device, device_id)
                    assert device is not None
                    assert encsvc.content_key_field(s, sealed_id, device) == key
                rows = list(s.exec(select(KeyWrap)))
                assert sorted(r.device_id for r in rows) == ["enc-0", "enc-1"]
                assert len(list(s.exec(select(EncryptedPackage)))) == 1
    finally:
        for link in links:
            link.close()


# ----- in-process: provisioning, refusals, key reissue --------------------------------------------------


class World:
    def __init__(self, api: Any) -> None:
        self.api = api
        self.ctx = api.ctx
        self.now = time.time()
        self.messages = DeviceMessages(
            self.ctx.db,
            default_chunk_size=1024,
            clock=lambda: self.now,
            served=self.ctx.rollout_driver.served,
        )
        model = api.ok("POST", "/api/models", 201, json={"name": "vibration"})
        self.version = api.ok(
            "POST",
            f"/api/models/{model['id']}/versions",
            201,
            params={"version": "1.0.0", "hardware_class": 1},
            content=MODEL.read_bytes(),
        )
        self.trust = TrustStore(bytes.fromhex(k["public_key"]) for k in api.ok("GET", "/api/trust-store"))

    def device(
        self, device_id: str, capabilities: dict[str, Any] | None = None
    ) -> tuple[ScriptedDevice, bytes]:
        made = self.api.ok("POST", "/api/devices", 201, json={"id": device_id, "hardware_class": 1})
        dev = ScriptedDevice(device_id, 1, self.messages.handle, self.trust)
        dev.publish("presence", {"online": True})
        reported = dev.reported()
        if capabilities is not None:
            reported["capabilities"] = capabilities
        dev.publish("reported", reported)
        return dev, base64.b64decode(made["encryption_key"])

    def rollout(self, status: int = 201, **body: Any) -> Any:
        body = {"name": "r", "model_version_id": self.version["id"], "start": True, **body}
        return self.api.ok("POST", "/api/rollouts", status, json=body)

    def desired(self, device_id: str) -> dict[str, Any]:
        with Session(self.ctx.db) as s:
            device = s.get(Device, device_id)
            assert device is not None
            return device.desired or {}


@pytest.fixture
def world(api: Any) -> World:
    return World(api)


CAPS = {"slot_size": 1 << 20, "ram_budget": 1 << 18}


def test_provisioning_hands_out_the_private_key_once(world: World) -> None:
    _, private = world.device("key-0")
    device = world.api.ok("GET", "/api/devices/key-0")
    assert device["encryption_public_key"] == public_key_of(private).hex()
    rotated = world.api.ok("POST", "/api/devices/key-0/credentials")
    assert rotated["encryption_key"] is None  # a password rotation keeps the device key
    bulk = world.api.ok(
        "POST", "/api/devices/bulk", 201, json={"count": 3, "prefix": "bk", "hardware_class": 1}
    )
    for d in bulk["devices"]:
        stored = world.api.ok("GET", f"/api/devices/{d['id']}")["encryption_public_key"]
        assert stored == public_key_of(base64.b64decode(d["encryption_key"])).hex()
    assert len({d["encryption_key"] for d in bulk["devices"]}) == 3


def test_in_process_encrypted_rollout_sends_a_working_wrap(world: World) -> None:
    dev, private = world.device("ip-0")
    r = world.rollout(encrypted=True)
    world.ctx.rollout_driver.tick(world.now + 1)
    desired = world.desired("ip-0")
    assert desired["operation"] == "install" and "content_key" in desired
    sealed = dev.fetch(desired["package_id"], desired["package_size"], desired["chunk_size"])
    assert (
        hashlib.sha256(open_package(sealed, desired["content_key"], private, world.trust)).hexdigest()
        == MODEL_SHA
    )
    action = world.api.ok("GET", f"/api/rollouts/{r['id']}/actions")[0]
    assert action["sent_package_id"] == desired["package_id"] and action["sent_size"] == len(sealed)


def test_one_tick_stores_every_wrap_in_one_insert_and_keeps_stored_ones(world: World) -> None:
    """The tick wraps all the devices it dispatches and stores the wraps in one multi-row INSERT ... ON
    CONFLICT DO NOTHING; a wrap stored before (a restart between dispatch and commit, another replica)
    conflicts and is read back, so that device is handed the stored one."""
    from sqlalchemy import delete, event, update

    from tinyfleet.server.models import DeviceAction

    privates = {f"one-{i}": world.device(f"one-{i}")[1] for i in range(4)}
    r = world.rollout(encrypted=True, max_concurrent=4)
    inserts: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO KEY_WRAPS"):
            inserts.append(statement)

    def tick(now: float) -> dict[str, dict[str, Any]]:
        inserts.clear()
        event.listen(world.ctx.db, "before_cursor_execute", seen)
        try:
            world.ctx.rollout_driver.tick(now)
        finally:
            event.remove(world.ctx.db, "before_cursor_execute", seen)
        assert len(inserts) == 1, inserts
        return {d: world.desired(d) for d in privates}

    first = tick(world.now + 1)
    # As if the dispatch were redone (a replica that stored half of the wraps, then this one): the
    # actions are queued again, and only two of the four wraps are still stored.
    with Session(world.ctx.db) as s:
        s.execute(update(DeviceAction).where(DeviceAction.rollout_id == r["id"]).values(state="queued"))
        s.execute(delete(KeyWrap).where(col(KeyWrap.device_id).in_(["one-0", "one-1"])))
        s.commit()
    second = tick(world.now + 2)
    with Session(world.ctx.db) as s:
        rows = {(w.encrypted_package_id, w.device_id): w for w in s.exec(select(KeyWrap))}
        assert len(rows) == 4
        for device_id, private in privates.items():
            desired = second[device_id]
            row = rows[(desired["package_id"], device_id)]
            assert base64.b64decode(desired["content_key"]) == bytes(row.wrap)
            sealed = s.get(EncryptedPackage, desired["package_id"])
            assert sealed is not None
            key = unwrap_content_key(bytes(row.wrap), private, bytes(sealed.data[:MANIFEST_SIZE]))
            assert key == bytes(sealed.content_key)
    for device_id in ("one-2", "one-3"):  # stored before: conflicted, read back, handed out again
        assert second[device_id]["content_key"] == first[device_id]["content_key"]
    for device_id in ("one-0", "one-1"):  # wrapped anew (a fresh ephemeral key: another wrap)
        assert second[device_id]["content_key"] != first[device_id]["content_key"]


def test_encrypted_rollout_of_a_model_larger_than_the_class_model_ram_is_refused(world: World) -> None:
    """A hardware class that declares its model RAM (PROTOCOL 6.6) is never sent an encrypted model its
    devices would refuse with MODEL_RAM_TOO_SMALL; the same model clear, or a big enough RAM, is fine."""
    world.device("ram-0")
    size = len(MODEL.read_bytes())
    hw = {"name": "m4", "chunk_size": 1024}
    assert (
        world.api.ok("PUT", "/api/hardware-classes/1", json={**hw, "model_ram": size - 1})["model_ram"]
        == size - 1
    )
    resp = world.api.client.post(
        "/api/rollouts",
        json={"name": "r", "model_version_id": world.version["id"], "start": True, "encrypted": True},
    )
    assert resp.status_code == 422, resp.text
    detail = resp.json()["detail"]
    assert "MODEL_RAM_TOO_SMALL" in detail and f"{size} bytes" in detail and "\n" not in detail
    world.rollout(start=False)  # clear: the model runs from flash, no model RAM needed
    world.api.ok("PUT", "/api/hardware-classes/1", json={**hw, "model_ram": size})
    draft = world.rollout(start=False, encrypted=True)
    assert draft["encrypted"] is True
    # declared smaller after the draft was made: starting the draft is refused the same way
    world.api.ok("PUT", "/api/hardware-classes/1", json={**hw, "model_ram": 1024})
    resp = world.api.client.post(f"/api/rollouts/{draft['id']}/start", json={})
    assert resp.status_code == 422 and "MODEL_RAM_TOO_SMALL" in resp.json()["detail"], resp.text
    assert world.api.ok("GET", f"/api/rollouts/{draft['id']}")["state"] == "draft"


def test_devices_without_a_key_are_refused_or_left_out(world: World) -> None:
    world.device("old-0")
    world.device("new-0")
    with Session(world.ctx.db) as s:  # provisioned before device keys existed
        device = s.get(Device, "old-0")
        assert device is not None
        device.encryption_public_key = None
        s.add(device)
        s.commit()
    resp = world.api.client.post(
        "/api/rollouts",
        json={"name": "r", "model_version_id": world.version["id"], "start": True, "encrypted": True},
    )
    assert resp.status_code == 409
    table = resp.json()["incompatible"]
    assert [(t["device_id"], t["error"]) for t in table] == [("old-0", "KEY_UNWRAP")]
    assert "no encryption key" in table[0]["reason"]
    r = world.rollout(encrypted=True, skip_incompatible=True)
    assert [d["device_id"] for d in r["skipped_devices"]] == ["old-0"]
    assert r["deploy"]["total"] == 1


def test_device_requiring_encryption_refuses_a_clear_rollout(world: World) -> None:
    world.device("strict-0", {**CAPS, "encryption": True, "requires_encryption": True})
    resp = world.api.client.post(
        "/api/rollouts", json={"name": "r", "model_version_id": world.version["id"], "start": True}
    )
    assert resp.status_code == 409
    (row,) = resp.json()["incompatible"]
    assert row["error"] == "NOT_ENCRYPTED" and row["error_code"] == ErrorCode.NOT_ENCRYPTED
    r = world.rollout(encrypted=True)  # the same device takes an encrypted one
    assert r["deploy"]["total"] == 1 and r["encrypted"] is True


def test_device_that_cannot_decrypt_is_refused_an_encrypted_rollout(world: World) -> None:
    world.device("plain-0", {**CAPS, "encryption": False})
    resp = world.api.client.post(
        "/api/rollouts",
        json={"name": "r", "model_version_id": world.version["id"], "start": True, "encrypted": True},
    )
    assert resp.status_code == 409 and resp.json()["incompatible"][0]["error"] == "FIELD_RANGE"


def test_new_encryption_key_replaces_the_old_and_drops_its_wraps(world: World) -> None:
    _, old_private = world.device("re-0")
    world.rollout(encrypted=True)
    world.ctx.rollout_driver.tick(world.now + 1)
    with Session(world.ctx.db) as s:
        assert s.exec(select(KeyWrap).where(KeyWrap.device_id == "re-0")).first() is not None
    issued = world.api.ok("POST", "/api/devices/re-0/encryption-key")
    new_private = base64.b64decode(issued["encryption_key"])
    assert new_private != old_private
    assert (
        world.api.ok("GET", "/api/devices/re-0")["encryption_public_key"] == public_key_of(new_private).hex()
    )
    with Session(world.ctx.db) as s:
        assert s.exec(select(KeyWrap).where(KeyWrap.device_id == "re-0")).first() is None
    assert world.api.client.post("/api/devices/nobody/encryption-key").status_code == 404


def test_offline_signed_packages_cannot_be_encrypted(world: World, tmp_path: Path) -> None:
    from tinyfleet.server.models import Package

    world.device("off-0")
    with Session(world.ctx.db) as s:  # as if imported signed offline: the server cannot re-sign it
        pkg = s.exec(select(Package)).one()
        pkg.signed_by = "offline"
        s.add(pkg)
        s.commit()
    resp = world.api.client.post(
        "/api/rollouts", json={"name": "r", "model_version_id": world.version["id"], "encrypted": True}
    )
    assert resp.status_code == 422 and "signed offline" in resp.json()["detail"]


def test_cli_encrypted_flag_and_provisioned_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from tinyfleet.cli import app
    from tinyfleet.server.stack import run_stack

    def run(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(app, list(args))
        return result.exit_code, result.output

    with run_stack(data_dir=tmp_path / "server", background=False) as st:
        monkeypatch.setenv("TINYFLEET_API_URL", st.url)
        monkeypatch.setenv("TINYFLEET_API_TOKEN", st.token)
        assert run("models", "create", "vibration")[0] == 0
        code, out = run(
            "models", "upload", "vibration", str(MODEL), "--version", "1.0.0", "--hardware-class", "1"
        )
        assert code == 0, out
        code, out = run("devices", "provision", "--hardware-class", "1", "--id", "cli-0", "--json")
        assert code == 0 and len(base64.b64decode(json.loads(out)["encryption_key"])) == 32
        args = ("rollouts", "create", "--model", "vibration", "--version", "1.0.0", "--encrypted", "--json")
        code, out = run(*args)
        assert code == 0 and '"encrypted": true' in out, out
        code, out = run("rollouts", "show", "1", "--no-actions")
        assert code == 0 and "encrypted" in out, out


def test_refused_variant_falls_back_to_the_encrypted_raw_package(world: World) -> None:
    dev, private = world.device("fb-0")
    r = world.rollout(encrypted=True)
    world.ctx.rollout_driver.tick(world.now + 1)
    first = world.desired("fb-0")
    (action,) = world.api.ok("GET", f"/api/rollouts/{r['id']}/actions")
    if action["payload_encoding"] == 0:
        pytest.skip("the compressed variant is not smaller than this model: no variant was sent")
    dev.status(first["action_id"], "failed", ErrorCode.DELTA_CORRUPT, "DELTA_CORRUPT")
    world.ctx.rollout_driver.tick(world.now + 2)
    second = world.desired("fb-0")
    assert second["action_id"] == first["action_id"] and second["package_id"] != first["package_id"]
    assert second["content_key"] != first["content_key"]  # another package: its own content key
    sealed = dev.fetch(second["package_id"], second["package_size"], second["chunk_size"])
    assert verify_package(sealed, world.trust).manifest.payload_encoding == 0
    assert (
        hashlib.sha256(open_package(sealed, second["content_key"], private, world.trust)).hexdigest()
        == MODEL_SHA
    )
    # the encrypted raw package refused in turn: no further fallback, the action stays failed
    dev.status(second["action_id"], "failed", ErrorCode.DELTA_CORRUPT, "DELTA_CORRUPT")
    world.ctx.rollout_driver.tick(world.now + 3)
    (action,) = world.api.ok("GET", f"/api/rollouts/{r['id']}/actions")
    assert action["state"] == "failed" and world.desired("fb-0")["package_id"] == second["package_id"]
