"""What a RabbitMQ cluster's HTTP auth backend is told (issue 16, docs/DEPLOY.md "Broker cluster").

RabbitMQ asks the server (rabbitmq_auth_backend_http, cached by rabbitmq_auth_backend_cache) whether a
user may log in, use the vhost, a queue or exchange, and publish or read a routing key; the answers come
from the devices table, so provisioning or revoking a device never touches the broker. The rules are
PROTOCOL.md 4.6's ACL (broker_acl.DEVICE_TOPICS) seen through RabbitMQ's MQTT plugin: topic `tf/ID/x`
is routing key `tf.ID.x` on `amq.topic`, and a device's subscriptions live in queues named
`mqtt-subscription-<client id>qos<0|1>`. The server's own account lives in the broker's internal user
database (tried first) and never reaches these rules.
"""

from __future__ import annotations

import time

from sqlmodel import Session, col, select

from tinyfleet.server.broker_acl import device_reads, device_writes
from tinyfleet.server.models import Device, DeviceCert
from tinyfleet.server.services.credentials import check_password
from tinyfleet.server.services.ids import is_device_id

MQTT_EXCHANGE = "amq.topic"
VHOST = "/"
_READS = frozenset(t.replace("/", ".") for t in device_reads())
_WRITES = frozenset(t.replace("/", ".") for t in device_writes())


def _has_valid_cert(session: Session, device_id: str) -> bool:
    stmt = select(DeviceCert.serial).where(
        DeviceCert.device_id == device_id,
        col(DeviceCert.revoked_at).is_(None),
        col(DeviceCert.not_after) > time.time(),
    )
    return session.exec(stmt).first() is not None


def user_allowed(session: Session, device_auth: str, username: str, password: str | None) -> bool:
    """Login: a provisioned device; with a certificate (cert mode, the broker verified it and passes no
    password) it must hold one that is not revoked; with a password (password mode) it must match."""
    if not is_device_id(username):
        return False
    if not password:
        # One query: deleting a device revokes its certificates, so a valid one means a live device.
        return device_auth == "cert" and _has_valid_cert(session, username)
    device = session.get(Device, username)
    return (
        device is not None
        and device_auth == "password"
        and check_password(password, device.mqtt_password_hash)
    )


def _same_client(username: str, client_id: str | None) -> bool:
    # RabbitMQ 3.10 has no use_username_as_clientid: a device that names another client id is refused.
    return client_id is None or client_id == username


def vhost_allowed(username: str, vhost: str, client_id: str | None = None) -> bool:
    """Right after a login the user check allowed (it read the database): no query here, as a fleet
    reconnecting to a node at once asks for every device."""
    return vhost == VHOST and is_device_id(username) and _same_client(username, client_id)


def resource_allowed(username: str, vhost: str, resource: str, name: str, permission: str) -> bool:
    """Queues and exchanges: its own subscription queues, and publishing to / binding from amq.topic."""
    if vhost != VHOST or not is_device_id(username):
        return False
    if resource == "exchange":
        return name == MQTT_EXCHANGE and permission in ("read", "write")
    if resource == "queue":
        return name.startswith(f"mqtt-subscription-{username}qos") and permission in (
            "configure",
            "read",
            "write",
        )
    return False


def topic_allowed(
    username: str, vhost: str, name: str, permission: str, routing_key: str, client_id: str | None = None
) -> bool:
    """Routing keys: `tf.<own id>.<kind>`, reading only what the server sends, writing only what the
    device reports (PROTOCOL.md 4.6)."""
    if vhost != VHOST or name != MQTT_EXCHANGE or not is_device_id(username):
        return False
    if not _same_client(username, client_id):
        return False
    prefix = f"tf.{username}."
    if not routing_key.startswith(prefix):
        return False
    kind = routing_key[len(prefix) :]
    if permission == "read":
        return kind in _READS
    if permission == "write":
        return kind in _WRITES
    return False
