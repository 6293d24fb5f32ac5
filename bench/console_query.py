"""Console reads at fleet size: GET /api/devices searches (filters, sort, one 50-device page) and the
aggregated GET /api/console/overview against a real server (uvicorn on a socket) holding N devices,
on SQLite and optionally PostgreSQL. A quarter of the devices are marked online and given an active
model digest, so that the presence and version filters select something. Reports the median and the
worst of --repeat requests per query, timed from sending to the parsed answer.

    .venv/bin/python bench/console_query.py --devices 10000 \
        --postgres postgresql+psycopg://postgres@127.0.0.1:5432 --markdown
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from sqlalchemy import update

from bench.scratch_db import scratch_database
from tinyfleet.server.models import Device
from tinyfleet.server.stack import run_stack

QUERIES: list[tuple[str, str, dict[str, object]]] = [
    ("first page, id order", "/api/devices", {"limit": 50}),
    ("search text", "/api/devices", {"q": "b2-0123", "limit": 50}),
    (
        "group + online, by last seen",
        "/api/devices",
        {"group": "g2", "online": True, "sort": "-last_seen", "limit": 50},
    ),
    (
        "tag + hw class, page 40",
        "/api/devices",
        {"tag": "edge", "hardware_class": 2, "limit": 50, "offset": 2000},
    ),
    ("failing now", "/api/devices", {"failing": True, "limit": 50}),
    ("overview (aggregated)", "/api/console/overview", {}),
    ("facets", "/api/console/facets", {}),
]


def run(
    devices: int, database_url: str | None, workdir: Path, repeat: int
) -> list[tuple[str, float, float, str]]:
    with run_stack(database_url=database_url, data_dir=workdir / "server", background=False) as st:
        auth = {"Authorization": f"Bearer {st.token}"}
        with httpx.Client(base_url=st.url, headers=auth, timeout=300) as c:
            per_group = devices // 4
            for g in range(4):
                body = {"count": per_group, "prefix": f"b{g}", "hardware_class": 1 + g % 2, "group": f"g{g}"}
                body["tags"] = ["edge"] if g % 2 else []
                c.post("/api/devices/bulk", json=body).raise_for_status()
            with st.ctx.session() as s:  # a quarter online, on some model
                s.exec(
                    update(Device)
                    .where(Device.id.like("%0"))  # type: ignore[attr-defined]
                    .values(online=True, last_seen=time.time(), active_model_sha256="ab" * 32)
                )
            out = []
            for name, path, params in QUERIES:
                times = []
                for _ in range(repeat):
                    t0 = time.perf_counter()
                    resp = c.get(path, params=params)
                    resp.raise_for_status()
                    resp.json()
                    times.append(time.perf_counter() - t0)
                out.append(
                    (name, statistics.median(times), max(times), resp.headers.get("X-Total-Count", "-"))
                )
            return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=10000)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--postgres", metavar="SERVER", help="also on PostgreSQL (a fresh database per run)")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    print(f"# cores {os.cpu_count()}, load {os.getloadavg()}", file=sys.stderr)
    stores = [("SQLite", None)] + ([("PostgreSQL", args.postgres)] if args.postgres else [])
    for store, url in stores:
        with tempfile.TemporaryDirectory(prefix="tinyfleet-bench-") as tmp, scratch_database(url) as db:
            rows = run(args.devices, db, Path(tmp), args.repeat)
        for name, median, worst, total in rows:
            if args.markdown:
                print(f"| {store} | {name} | {total} | {median * 1000:.1f} | {worst * 1000:.1f} |")
            else:
                ms = f"{median * 1000:.1f} ms median, {worst * 1000:.1f} ms worst"
                print(f"{store}: {name}: {ms}, {total} match")
    print(f"# load after {os.getloadavg()}", file=sys.stderr)


if __name__ == "__main__":
    main()
