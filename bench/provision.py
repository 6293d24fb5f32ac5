"""Bulk provisioning benchmark: POST /api/devices/bulk for N devices against a real server (uvicorn on a
socket, SQLite or PostgreSQL), timed from request to the parsed answer, then the broker password file
checked (one line per device). With --auth cert the server runs TINYFLEET_DEVICE_AUTH=cert: each device
gets an X.509 certificate and key from the fleet CA instead, and the password file must stay untouched.

    .venv/bin/python bench/provision.py --devices 1000 10000 \
        --postgres postgresql+psycopg://postgres@127.0.0.1:5432 --markdown [--auth cert]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from bench.scratch_db import scratch_database
from tinyfleet.server.stack import run_stack


def run_one(
    devices: int, database_url: str | None, workdir: Path, auth: str = "password"
) -> tuple[float, int]:
    """Seconds for one bulk call of `devices`, and the answer's size in bytes."""
    passwd = workdir / "mosquitto.passwd"
    with run_stack(
        database_url=database_url,
        data_dir=workdir / "server",
        background=False,
        mqtt_password_file=passwd,
        device_auth=auth,
    ) as st:
        with httpx.Client(base_url=st.url, headers={"Authorization": f"Bearer {st.token}"}, timeout=300) as c:
            body = {"count": devices, "prefix": "bench", "hardware_class": 1, "tags": ["bench"]}
            t0 = time.perf_counter()
            resp = c.post("/api/devices/bulk", json=body)
            resp.raise_for_status()
            answer = resp.json()
            seconds = time.perf_counter() - t0
        assert answer["count"] == devices
        if auth == "cert":  # certificates for all, and the broker's password file never written
            assert all(d["certificate_pem"] and d["private_key_pem"] for d in answer["devices"])
            assert not passwd.exists() or passwd.read_text() == ""
        else:
            assert len(passwd.read_text().splitlines()) == devices
        return seconds, len(resp.content)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument(
        "--postgres",
        metavar="SERVER",
        help="also on PostgreSQL: a fresh database per run on this server, e.g."
        " postgresql+psycopg://postgres@127.0.0.1:5432 (needs CREATE DATABASE)",
    )
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table row per run")
    ap.add_argument("--auth", choices=("password", "cert"), default="password", help="device identity")
    args = ap.parse_args()
    print(f"# cores {os.cpu_count()}, load {os.getloadavg()[0]:.2f}", file=sys.stderr)
    stores = [("SQLite", None)] + ([("PostgreSQL", args.postgres)] if args.postgres else [])
    for name, url in stores:
        for n in args.devices:
            with tempfile.TemporaryDirectory(prefix="tinyfleet-bench-") as tmp, scratch_database(url) as db:
                seconds, size = run_one(n, db, Path(tmp), args.auth)
            if args.markdown:
                print(
                    f"| {name} | {args.auth} | {n:,} | {seconds:.2f} | {n / seconds:,.0f} | {size / n:.0f} |"
                )
            else:
                print(
                    f"{name} ({args.auth}): {n} devices in {seconds:.2f} s ({n / seconds:.0f}/s),"
                    f" {size / n:.0f} B/device"
                )


if __name__ == "__main__":
    main()
