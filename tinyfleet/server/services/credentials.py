"""Device MQTT credentials in Mosquitto's own password-file format, so that the broker (not this server)
checks them: the server keeps only the hash, writes the file, and the broker reloads it on SIGHUP."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

ITERATIONS = 1000


def new_password() -> str:
    return secrets.token_urlsafe(24)


def hash_password(password: str, *, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """mosquitto_passwd "$7$" format: PBKDF2-HMAC-SHA512, 12-byte salt, base64 fields."""
    salt = os.urandom(12) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


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


def write_password_file(path: Path, entries: Iterable[tuple[str, str]]) -> None:
    """Replace the file atomically (write then rename) so the broker never reads half a file."""
    lines = [f"{user}:{encoded}\n" for user, encoded in entries]
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.writelines(lines)
    os.replace(tmp, path)
