"""Bulk provisioning files for `tinyfleet devices provision --from / --out`: the devices CSV read in,
the credentials CSV written out (mode 0600, never over an existing file: its passwords are shown once)."""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path
from typing import Any

COLUMNS = ("id", "hardware_class", "group", "tags")
CREDENTIAL_COLUMNS = (
    "id",
    "username",
    "password",
    "hardware_class",
    "chunk_size",
    "host",
    "port",
    "tls",
    "encryption_key",  # X25519 private key, base64 (PROTOCOL 4.6): shown once, like the password
)
TAG_SPLIT = re.compile(r"[;,\s]+")  # labels cannot hold these (schemas.LABEL_PATTERN)
MAX_ROWS = 10_000


class CsvError(ValueError):
    """A devices CSV that cannot be read; the message is one line naming the file and line."""


def read_devices_csv(path: Path) -> list[dict[str, Any]]:
    """Rows of id, hardware_class, group, tags (tags separated by ';', ',' or spaces); only id and
    hardware_class are required. The server validates the values; this checks the shape."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise CsvError(f"{path}: cannot read: {exc}") from None
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in reader.fieldnames or []]
    unknown = [h for h in header if h not in COLUMNS]
    if "id" not in header or "hardware_class" not in header or unknown:
        raise CsvError(
            f"{path} line 1: the header must name id and hardware_class (optional: group, tags);"
            f" got {', '.join(header) or 'nothing'}"
        )
    reader.fieldnames = header
    out: list[dict[str, Any]] = []
    try:
        for row in reader:
            line = reader.line_num
            if None in row:
                raise CsvError(f"{path} line {line}: more fields than the header has")
            device_id = (row.get("id") or "").strip()
            hw = (row.get("hardware_class") or "").strip()
            if not device_id:
                raise CsvError(f"{path} line {line}: id is empty")
            if not hw.isdigit() or int(hw) > 0xFFFFFFFF:
                raise CsvError(
                    f"{path} line {line}: hardware_class must be an integer 0..4294967295, got {hw!r}"
                )
            body: dict[str, Any] = {"id": device_id, "hardware_class": int(hw)}
            if group := (row.get("group") or "").strip():
                body["group"] = group
            body["tags"] = [t for t in TAG_SPLIT.split(row.get("tags") or "") if t]
            out.append(body)
            if len(out) > MAX_ROWS:
                raise CsvError(f"{path}: more than {MAX_ROWS} devices; split it into several files")
    except csv.Error as exc:
        raise CsvError(f"{path} line {reader.line_num}: {exc}") from None
    if not out:
        raise CsvError(f"{path}: no devices (only a header)")
    return out


def create_credentials_file(path: Path) -> int:
    """Open a new file for the credentials, readable by its owner only; FileExistsError if it exists."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)


def write_credentials(fd: int, answer: dict[str, Any]) -> None:
    """The bulk answer as CSV, one device a line (the trust store is the same for all: in the summary)."""
    m = answer["mqtt"]
    with os.fdopen(fd, "w", encoding="ascii", newline="") as f:
        os.fchmod(f.fileno(), 0o600)  # whatever the umask
        w = csv.writer(f)
        w.writerow(CREDENTIAL_COLUMNS)
        for d in answer["devices"]:
            w.writerow(
                [
                    d["id"],
                    d["id"],
                    d["password"],
                    d["hardware_class"],
                    d["chunk_size"],
                    m["host"] or "",
                    m["port"] or "",
                    m["tls"],
                    d.get("encryption_key") or "",
                ]
            )
