"""Device MQTT credentials in Mosquitto's own password-file format, so that the broker (not this server)
checks them: the server keeps only the hash, writes the file, and the broker reloads it on SIGHUP.

The file must be readable by the broker's user (Debian's mosquitto runs as `mosquitto`, not as the
server's user): FileAccess gives it a group (mode 0640) or an owner (deploy/README.md).
"""

from __future__ import annotations

import base64
import grp
import hashlib
import hmac
import logging
import os
import pwd
import secrets
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tinyfleet.server.services.ids import is_device_id

log = logging.getLogger(__name__)

ITERATIONS = 1000


def new_password() -> str:
    return secrets.token_urlsafe(24)


def hash_password(password: str, *, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """mosquitto_passwd "$7$" format: PBKDF2-HMAC-SHA512, 12-byte salt, base64 fields."""
    salt = os.urandom(12) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def hash_passwords(passwords: Sequence[str]) -> list[str]:
    """hash_password for many, on every core: hashlib's PBKDF2 releases the GIL, so threads run in
    parallel (the per-device hash dominates bulk provisioning; same format and iterations)."""
    workers = min(os.cpu_count() or 1, 16)
    if len(passwords) < 64 or workers == 1:
        return [hash_password(p) for p in passwords]
    with ThreadPoolExecutor(workers, thread_name_prefix="pbkdf2") as pool:
        return list(pool.map(hash_password, passwords, chunksize=64))


def check_password(password: str, encoded: str) -> bool:
    parts = encoded.split("$")
    if len(parts) != 5 or parts[1] != "7":
        return False
    try:
        iterations = int(parts[2])
        salt = base64.b64decode(parts[3])
        expected = base64.b64decode(parts[4])
    except ValueError:
        return False
    return hmac.compare_digest(hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations), expected)


@dataclass(frozen=True)
class FileAccess:
    """Owner, group and mode the password file gets (None: the server's own)."""

    uid: int | None = None
    gid: int | None = None

    @property
    def mode(self) -> int:
        return 0o640 if self.gid is not None else 0o600

    @classmethod
    def resolve(cls, owner: str | None, group: str | None) -> FileAccess:
        """From user and group names (or numbers); ValueError naming the one that does not exist."""
        uid = gid = None
        if owner:
            try:
                uid = int(owner) if owner.isdigit() else pwd.getpwnam(owner).pw_uid
            except KeyError:
                raise ValueError(
                    f"TINYFLEET_MQTT_PASSWORD_FILE_OWNER: no user {owner!r} on this host"
                ) from None
        if group:
            try:
                gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
            except KeyError:
                raise ValueError(
                    f"TINYFLEET_MQTT_PASSWORD_FILE_GROUP: no group {group!r} on this host"
                ) from None
        return cls(uid, gid)

    def apply(self, fd: int, path: Path) -> None:
        """Give an open file this owner, group and mode (before it becomes visible to the broker)."""
        if self.uid is not None or self.gid is not None:
            try:
                os.fchown(fd, -1 if self.uid is None else self.uid, -1 if self.gid is None else self.gid)
            except PermissionError:
                raise PermissionError(
                    f"cannot give {path} owner {self.uid} / group {self.gid}: the server must run as root,"
                    " or (for a group) be a member of that group"
                ) from None
        os.fchmod(fd, self.mode)


def password_entries(
    services: Iterable[tuple[str, str]], devices: Iterable[tuple[str, str]]
) -> list[tuple[str, str]]:
    """The file's lines: the service accounts first, then every device whose id a device may have.
    A device row named like a service account, or outside the id rules (rows from before them), is left
    out and logged: it must never replace the gateway's password nor get its ACL rights."""
    entries = list(services)
    taken = {user for user, _ in entries}
    for user, encoded in devices:
        if not encoded:  # a device with a certificate identity (services/device_certs.py): no password
            continue
        if user in taken or not is_device_id(user):
            log.error("device %r left out of the MQTT password file: not a valid device id", user)
            continue
        taken.add(user)
        entries.append((user, encoded))
    return entries


def write_password_file(
    path: Path, entries: Iterable[tuple[str, str]], access: FileAccess | None = None
) -> None:
    """Replace the file atomically (write then rename) so the broker never reads half a file."""
    lines = [f"{user}:{encoded}\n" for user, encoded in entries]
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        (access or FileAccess()).apply(f.fileno(), path)
        f.writelines(lines)
    os.replace(tmp, path)
