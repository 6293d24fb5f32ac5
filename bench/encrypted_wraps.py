"""Encrypted rollouts: the cost of wrapping content keys per device (PROTOCOL 6).

1. The wrap alone (`wrap_content_key`: ephemeral X25519 key, X25519, HKDF, HMAC) for N device keys.
2. Send time in the server: one rollout-driver tick that dispatches N devices at once (SQLite or
   PostgreSQL, no broker: desired states are recorded), for a clear rollout and an encrypted one of the
   same package to N other devices; the difference per device is what encryption adds at send time
   (wrap + its row in `key_wraps` + the desired state's field). Then the same wraps read back from the
   database (what a resend or a restarted server does).

    .venv/bin/python bench/encrypted_wraps.py --devices 10000 \
        [--postgres postgresql+psycopg://postgres@127.0.0.1:5432]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import update
from sqlmodel import Session, col, func, select

from bench.scratch_db import scratch_database
from tinyfleet.server.config import Settings
from tinyfleet.server.context import AppContext
from tinyfleet.server.models import Device, KeyWrap
from tinyfleet.server.schemas import DeviceCreate, ModelCreate, RolloutCreate, Selector
from tinyfleet.server.services import devices as devsvc
from tinyfleet.server.services import encrypted as encsvc
from tinyfleet.server.services import packages as pkgsvc
from tinyfleet.server.services import registry
from tinyfleet.server.services import rollouts as rsvc
from tinyfleet.signing.encryption import generate_device_keypair, new_content_key, wrap_content_key

MODEL = Path(__file__).resolve().parent.parent / "examples" / "vibration-1.0.0.tflite"


def wraps_alone(n: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds) to wrap one content key for n device public keys."""
    publics = [generate_device_keypair()[1] for _ in range(n)]
    key, manifest = new_content_key(), os.urandom(292)
    t0, c0 = time.perf_counter(), time.process_time()
    for public in publics:
        wrap_content_key(key, public, manifest)
    return time.perf_counter() - t0, time.process_time() - c0


def _tick(ctx: AppContext, rollout_id: int) -> tuple[float, float]:
    """(wall, CPU) seconds of one driver tick; no background thread runs, so CPU is the tick's."""
    t0, c0 = time.perf_counter(), time.process_time()
    ctx.rollout_driver.tick()
    seconds = time.perf_counter() - t0, time.process_time() - c0
    with Session(ctx.db) as s:
        actions = rsvc.actions_of(s, rollout_id)
        assert actions and all(a.state == "notified" for a in actions), "every device dispatched"
    return seconds


def send_time(n: int, database_url: str | None, workdir: Path) -> dict[str, float]:
    settings = Settings(
        database_url=database_url or f"sqlite:///{workdir / 'tinyfleet.db'}",
        data_dir=workdir / "server",
        payload_variants=False,  # the raw package and its encrypted copy: nothing else is timed
    ).validate()
    ctx = AppContext(settings)
    try:
        with ctx.session() as s:
            for group in ("clear", "enc"):
                bodies = [
                    DeviceCreate(id=f"{group}-{i:05d}", hardware_class=1, group=group) for i in range(n)
                ]
                devsvc.provision_bulk(s, ctx, bodies, with_password=False)
            s.execute(update(Device).values(online=True))
            model = registry.create_model(s, ModelCreate(name="vibration"))
            pkg = pkgsvc.build_from_tflite(
                s,
                ctx.keys,
                model,
                version="1.0.0",
                tflite=MODEL.read_bytes(),
                hardware_class=1,
                min_runtime_version="0.1.0",
                security_counter=None,
            )
            mv_id = pkg.model_version_id
        out: dict[str, float] = {}
        for group, encrypted in (("clear", False), ("enc", True)):
            with ctx.session() as s:
                body = RolloutCreate(
                    name=group,
                    model_version_id=mv_id,
                    selector=Selector(group=group),
                    max_concurrent=n,
                    encrypted=encrypted,
                    start=True,
                )
                rollout_id = rsvc.create(s, ctx, body, 600.0, keys=ctx.keys).id or 0
            out[group], out[f"{group}_cpu"] = _tick(ctx, rollout_id)
        with Session(ctx.db) as s:
            assert s.exec(select(func.count()).select_from(KeyWrap)).one() == n
            devices = list(s.exec(select(Device).where(col(Device.group) == "enc")))
            sent = {d.id: (d.desired or {}) for d in devices}
            t0, c0 = time.perf_counter(), time.process_time()
            for d in devices:  # a resend: a new wrap refused by the stored one, which is returned
                again = encsvc.content_key_field(s, sent[d.id]["package_id"], d)
                assert again == sent[d.id]["content_key"]
            out["cached"], out["cached_cpu"] = time.perf_counter() - t0, time.process_time() - c0
        return out
    finally:
        ctx.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=10000)
    ap.add_argument("--postgres", metavar="SERVER", help="also on PostgreSQL (a fresh database per run)")
    args = ap.parse_args()
    n = args.devices
    print(f"# cores {os.cpu_count()}, load {os.getloadavg()[0]:.2f}")
    wall, cpu = wraps_alone(n)
    print(
        f"wrap alone: {n} devices in {wall:.2f} s wall, {cpu:.2f} s CPU ({cpu / n * 1e6:.0f} us CPU/device)"
    )
    stores = [("SQLite", None)] + ([("PostgreSQL", args.postgres)] if args.postgres else [])
    for name, url in stores:
        with tempfile.TemporaryDirectory(prefix="tinyfleet-bench-") as tmp, scratch_database(url) as db:
            t = send_time(n, db, Path(tmp))
        extra = (t["enc"] - t["clear"]) / n * 1e3
        extra_cpu = (t["enc_cpu"] - t["clear_cpu"]) / n * 1e3
        print(
            f"{name}: dispatch tick of {n} devices: clear {t['clear']:.2f} s wall / {t['clear_cpu']:.2f} s"
            f" CPU, encrypted {t['enc']:.2f} s / {t['enc_cpu']:.2f} s (+{extra:.2f} ms wall,"
            f" +{extra_cpu:.2f} ms CPU per device); resent (stored wraps returned) {t['cached']:.2f} s"
            f" wall / {t['cached_cpu']:.2f} s CPU"
        )
    print(f"# load after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
