"""/broker/auth/*: the answers a RabbitMQ cluster's HTTP auth backend gets (issue 16), through the real
app on a real database (services/broker_authz.py). The live cluster: tests/e2e/test_broker_cluster.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.inprocess_api import SyncASGITransport
from tinyfleet.server.app import create_app
from tinyfleet.server.config import Settings
from tinyfleet.server.context import AppContext


def _client(db_url: str, tmp_path: Path, **overrides: object) -> tuple[httpx.Client, AppContext]:
    settings = Settings(database_url=db_url, data_dir=tmp_path / "data", **overrides).validate()  # type: ignore[arg-type]
    ctx = AppContext(settings)
    client = httpx.Client(
        transport=SyncASGITransport(create_app(ctx=ctx, background=False)),
        base_url="http://tinyfleet.test",
        headers={"Authorization": f"Bearer {settings.api_token}"},
    )
    return client, ctx


@pytest.fixture
def cert_app(db_url: str, tmp_path: Path) -> Iterator[httpx.Client]:
    client, ctx = _client(db_url, tmp_path, device_auth="cert", broker_auth_http=True)
    yield client
    client.close()
    ctx.db.dispose()


def _ask(client: httpx.Client, what: str, **fields: str) -> str:
    resp = client.post(f"/broker/auth/{what}", data=fields, headers={"Authorization": ""})
    assert resp.status_code == 200, resp.text
    return resp.text


def test_cert_devices_log_in_until_revoked(cert_app: httpx.Client) -> None:
    assert cert_app.post("/api/devices", json={"id": "pump-1", "hardware_class": 1}).status_code == 201
    assert _ask(cert_app, "user", username="pump-1") == "allow"  # certificate login: no password
    assert _ask(cert_app, "user", username="pump-1", password="x") == "deny"  # cert mode: no passwords
    assert _ask(cert_app, "user", username="pump-2") == "deny"  # not provisioned
    assert _ask(cert_app, "user", username="tinyfleet-server") == "deny"  # lives in the broker itself
    assert _ask(cert_app, "vhost", username="pump-1", vhost="/", ip="127.0.0.1") == "allow"
    assert _ask(cert_app, "vhost", username="pump-1", vhost="other") == "deny"
    assert _ask(cert_app, "vhost", username="pump-1", vhost="/", client_id="pump-9") == "deny"
    assert cert_app.post("/api/devices/pump-1/certificate/revoke").status_code == 200
    assert _ask(cert_app, "user", username="pump-1") == "deny"


@pytest.mark.parametrize(
    ("permission", "routing_key", "answer"),
    [
        ("write", "tf.pump-1.status", "allow"),
        ("write", "tf.pump-1.telemetry", "allow"),
        ("write", "tf.pump-1.chunk.req", "allow"),
        ("read", "tf.pump-1.desired", "allow"),
        ("read", "tf.pump-1.chunk", "allow"),
        ("write", "tf.pump-1.desired", "deny"),  # only the server sets desired state
        ("read", "tf.pump-1.status", "deny"),
        ("write", "tf.pump-2.status", "deny"),  # another device's topic
        ("read", "tf.*.desired", "deny"),
        ("read", "tf.#", "deny"),
        ("write", "tf.pump-1", "deny"),
    ],
)
def test_devices_use_only_their_own_routing_keys(
    cert_app: httpx.Client, permission: str, routing_key: str, answer: str
) -> None:
    fields = {"username": "pump-1", "vhost": "/", "resource": "topic", "name": "amq.topic"}
    assert _ask(cert_app, "topic", permission=permission, routing_key=routing_key, **fields) == answer


def test_queues_and_exchanges(cert_app: httpx.Client) -> None:
    base = {"username": "pump-1", "vhost": "/"}
    assert (
        _ask(
            cert_app,
            "resource",
            resource="queue",
            name="mqtt-subscription-pump-1qos0",
            permission="configure",
            **base,
        )
        == "allow"
    )
    assert (
        _ask(
            cert_app,
            "resource",
            resource="queue",
            name="mqtt-subscription-pump-2qos0",
            permission="read",
            **base,
        )
        == "deny"
    )
    assert (
        _ask(
            cert_app,
            "resource",
            resource="queue",
            name="tinyfleet.device-messages",
            permission="read",
            **base,
        )
        == "deny"
    )
    assert (
        _ask(cert_app, "resource", resource="exchange", name="amq.topic", permission="write", **base)
        == "allow"
    )
    assert (
        _ask(cert_app, "resource", resource="exchange", name="amq.topic", permission="configure", **base)
        == "deny"
    )


def test_password_mode_checks_the_password(db_url: str, tmp_path: Path) -> None:
    client, ctx = _client(db_url, tmp_path, broker_auth_http=True)
    try:
        created = client.post("/api/devices", json={"id": "pump-3", "hardware_class": 1}).json()
        password = created["mqtt"]["password"]
        assert _ask(client, "user", username="pump-3", password=password) == "allow"
        assert _ask(client, "user", username="pump-3", password=password + "x") == "deny"
        assert _ask(client, "user", username="pump-3") == "deny"
    finally:
        client.close()
        ctx.db.dispose()


def test_routes_exist_only_when_enabled(db_url: str, tmp_path: Path) -> None:
    client, ctx = _client(db_url, tmp_path)
    try:
        assert client.post("/broker/auth/user", data={"username": "x"}).status_code == 404
    finally:
        client.close()
        ctx.db.dispose()
