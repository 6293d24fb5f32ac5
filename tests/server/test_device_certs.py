"""Certificate identity against a real Mosquitto with a TLS listener (DevBroker(tls=...)): devices connect
with the certificate provisioning gave them, the ACL holds (CN = username = device id), other CAs and
revoked certificates are refused, and adding devices never touches the broker."""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tinyfleet.server.broker_acl import DEPLOY_SERVICE_USER
from tinyfleet.server.devbroker import BrokerTls, DevBroker
from tinyfleet.server.services.fleet_ca import FleetCA, IssuedCert, write_pair
from tinyfleet.server.stack import Stack, run_stack


class TlsClient:
    """A paho client that logs in with a certificate; `connected` tells whether the broker let it in."""

    def __init__(self, broker: DevBroker, ca_pem: str, cert_pem: str, key_pem: str, client_id: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._got = threading.Condition()
        self._answered = threading.Event()
        self.connected = False
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        with tempfile.TemporaryDirectory() as tmp:  # paho loads PEM from files; they need not stay
            files = {}
            for name, text in (("ca", ca_pem), ("cert", cert_pem), ("key", key_pem)):
                files[name] = Path(tmp) / f"{name}.pem"
                files[name].write_text(text)
            self.client.tls_set(str(files["ca"]), str(files["cert"]), str(files["key"]))
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *_a: self._answered.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port, keepalive=30)
        self.client.loop_start()
        self._answered.wait(10)

    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self.connected = not reason.is_failure
        self._answered.set()

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._got:
            self.messages.append((msg.topic, bytes(msg.payload)))
            self._got.notify_all()

    def wait_for(self, topic: str, timeout: float = 10.0) -> list[str]:
        deadline = time.monotonic() + timeout
        with self._got:
            while not any(t == topic for t, _ in self.messages) and time.monotonic() < deadline:
                self._got.wait(0.1)
            return [t for t, _ in self.messages]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def fleet_ca(tmp_path: Path) -> FleetCA:
    return FleetCA.open(tmp_path / "fleet-ca", None)


@pytest.fixture
def tls_broker(dev_broker: Callable[..., DevBroker], fleet_ca: FleetCA, tmp_path: Path) -> DevBroker:
    cert, key = write_pair(tmp_path / "broker-tls", "server", fleet_ca.issue_broker())
    tls = BrokerTls(fleet_ca.cert_path, cert, key, fleet_ca.crl_path)
    return dev_broker(tls=tls, admin_users=[DEPLOY_SERVICE_USER])


@pytest.fixture
def stack(tls_broker: DevBroker, fleet_ca: FleetCA, tmp_path: Path) -> Iterator[Stack]:
    """A cert-mode control plane whose gateway logs in with its own certificate (CN = service user)."""
    gw_cert, gw_key = write_pair(tmp_path / "gateway", "gateway", fleet_ca.issue_service(DEPLOY_SERVICE_USER))
    pid_file = tmp_path / "mosquitto.pid"
    pid_file.write_text(f"{tls_broker.pid}\n")
    with run_stack(
        tls_broker.url,
        data_dir=tmp_path / "data",
        device_auth="cert",
        ca_dir=fleet_ca.directory,
        mqtt_ca_file=fleet_ca.cert_path,
        mqtt_cert_file=gw_cert,
        mqtt_key_file=gw_key,
        mqtt_broker_pid_file=pid_file,
        mqtt_client_id=DEPLOY_SERVICE_USER,
        mqtt_password_file=tmp_path / "passwd",
    ) as running:
        yield running


def _device(broker: DevBroker, doc: dict[str, Any]) -> TlsClient:
    cert = doc["certificate"]
    return TlsClient(broker, cert["ca_pem"], cert["certificate_pem"], cert["private_key_pem"], "ignored")


def test_device_connects_with_its_certificate_and_only_uses_its_own_topics(
    stack: Stack, tls_broker: DevBroker
) -> None:
    with stack.client() as http:
        one = http.post("/api/devices", json={"id": "dev-0001", "hardware_class": 1}).json()
        http.post("/api/devices", json={"id": "dev-0002", "hardware_class": 1}).raise_for_status()
    device = _device(tls_broker, one)
    try:
        assert device.connected
        # Someone else's topic first, then its own presence on the same connection (QoS 1, in order):
        # once the gateway has seen the presence, it would have seen the status too had the ACL let it by.
        device.client.publish("tf/dev-0002/status", b'{"x":1}', qos=1)
        device.client.publish("tf/dev-0001/presence", b'{"online":true}', qos=1).wait_for_publish(5)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not http_online(stack, "dev-0001"):
            time.sleep(0.05)
        assert http_online(stack, "dev-0001")  # the gateway (CN = service user) got it
        stack.ctx.gateway.wait_idle(10)
        received = stack.ctx.stats.snapshot().get("received", {})
        assert received.get("presence") == 1 and "status" not in received
    finally:
        device.close()


def http_online(stack: Stack, device_id: str) -> bool:
    with stack.client() as http:
        return bool(http.get(f"/api/devices/{device_id}").json()["online"])


def test_a_certificate_from_another_ca_is_refused(tls_broker: DevBroker, tmp_path: Path) -> None:
    stranger = FleetCA.open(tmp_path / "other-ca", None)
    issued: IssuedCert = stranger.issue_device("dev-0001")
    # It trusts the right CA for the broker, but its own certificate is signed by a stranger.
    ca_pem = (tls_broker.tls.cafile if tls_broker.tls else Path()).read_text()
    client = TlsClient(tls_broker, ca_pem, issued.cert_pem, issued.key_pem or "", "x")
    try:
        assert not client.connected
    finally:
        client.close()


def test_revoked_certificate_is_refused_after_the_broker_rereads_the_crl(
    stack: Stack, tls_broker: DevBroker
) -> None:
    reloader = stack.ctx.broker_reloader
    assert reloader.wait_idle(10)
    reloads = reloader.reloads  # the password file (gateway only) written at start was one
    with stack.client() as http:
        doc = http.post("/api/devices", json={"id": "dev-0001", "hardware_class": 1}).json()
        first = _device(tls_broker, doc)
        assert first.connected
        http.post("/api/devices/dev-0001/certificate/revoke").raise_for_status()
    assert reloader.wait_idle(10)
    assert reloader.reloads == reloads + 1, reloader.last_error
    try:
        again = _device(tls_broker, doc)
        assert not again.connected
        again.close()
        # The connection opened before the revocation stays open (mosquitto checks the CRL only at the
        # handshake), but the gateway drops what it sends.
        assert first.client.is_connected()
        first.client.publish("tf/dev-0001/presence", b'{"online":true}', qos=1).wait_for_publish(5)
        first.client.publish("tf/dev-0001/telemetry", b'{"reports":[]}', qos=1).wait_for_publish(5)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if stack.ctx.stats.snapshot()["events"].get("revoked_dropped") == 2:
                break
            time.sleep(0.05)
        assert stack.ctx.stats.snapshot()["events"]["revoked_dropped"] == 2
        assert "telemetry" not in stack.ctx.stats.snapshot().get("received", {})
        assert not http_online(stack, "dev-0001")
        # A new certificate: the device is heard again, and its login takes over the client id (= CN), so
        # the broker closes the connection the revoked certificate still had.
        with stack.client() as http:
            renewed_doc = http.post("/api/devices/dev-0001/certificate", json={}).json()
        renewed = _device(tls_broker, renewed_doc)
        try:
            assert renewed.connected
            renewed.client.publish("tf/dev-0001/presence", b'{"online":true}', qos=1).wait_for_publish(5)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and (
                first.client.is_connected() or not http_online(stack, "dev-0001")
            ):
                time.sleep(0.05)
            assert http_online(stack, "dev-0001")
            assert not first.client.is_connected()
        finally:
            renewed.close()
    finally:
        first.close()


def test_bulk_provisioning_in_cert_mode_leaves_the_password_file_and_broker_alone(
    stack: Stack, tls_broker: DevBroker, tmp_path: Path
) -> None:
    passwd = tmp_path / "passwd"
    assert stack.ctx.broker_reloader.wait_idle(10)
    reloads = stack.ctx.broker_reloader.reloads
    before = passwd.read_bytes()
    with stack.client() as http:
        resp = http.post("/api/devices/bulk", json={"count": 50, "prefix": "bulk", "hardware_class": 1})
    assert resp.status_code == 201, resp.text
    doc = resp.json()
    assert doc["ca_pem"] and doc["mqtt"]["tls"] is True
    assert all(d["password"] is None and d["certificate_pem"] for d in doc["devices"])
    assert passwd.read_bytes() == before
    assert stack.ctx.broker_reloader.wait_idle(10)
    assert stack.ctx.broker_reloader.reloads == reloads
    last = doc["devices"][-1]
    client = TlsClient(tls_broker, doc["ca_pem"], last["certificate_pem"], last["private_key_pem"], "y")
    try:
        assert client.connected  # the broker knew nothing of it, and lets it in
    finally:
        client.close()
