"""Latency of the upload check and of a whole .tflite upload (POST /api/models/{id}/versions, SQLite, the
app driven in-process). `in-process` is the check as it ran before it moved to a child process (C engine +
TFLM reference in the server's own process); `child` is services.model_check.check_model (one worker
process per model, a warm spare started after each check). --gap seconds pass between runs (not timed),
as between real uploads; with 0 the spare is still starting when the next check takes it. The upload is
timed with each check (the in-process one patched in for the comparison).

    PYTHONPATH=. .venv/bin/python bench/upload_check.py [--runs 30] [--gap 1] [--model M.tflite]
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.support.inprocess_api import SyncASGITransport
from tinyfleet.device.engine import Engine
from tinyfleet.server.app import create_app
from tinyfleet.server.config import Settings
from tinyfleet.server.context import AppContext
from tinyfleet.server.services import packages
from tinyfleet.server.services.model_check import EngineFacts, check_model, selftest_seed_for
from tinyfleet.signing import selftest


def timed(runs: int, gap: float, fn: Callable[[int], object]) -> list[float]:
    out = []
    for i in range(runs):
        time.sleep(gap)
        start = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - start)
    return out


def summary(name: str, seconds: list[float]) -> str:
    ms = sorted(s * 1000 for s in seconds)
    p90 = ms[min(len(ms) - 1, int(len(ms) * 0.9))]
    return f"{name}: median {statistics.median(ms):.1f} ms, p90 {p90:.1f} ms ({len(ms)} runs)"


def in_process(model: bytes, **_: object) -> EngineFacts:
    """The check as it was: the same facts, computed in the server's own process."""
    seed = selftest_seed_for(model)
    digest = selftest.expected_output_sha256(model, seed)
    return EngineFacts(Engine(model).arena_used, seed, digest, hashlib.sha256(model).digest())


def upload_times(model: bytes, runs: int, gap: float) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(database_url=f"sqlite:///{tmp}/db.sqlite", data_dir=Path(tmp) / "data").validate()
        ctx = AppContext(settings)
        client = httpx.Client(
            transport=SyncASGITransport(create_app(ctx=ctx, background=False)),
            base_url="http://bench",
            headers={"Authorization": f"Bearer {settings.api_token}"},
        )
        model_id = client.post("/api/models", json={"name": "bench"}).json()["id"]

        def upload(i: int) -> None:
            params = {"version": f"1.0.{i}", "hardware_class": 1}
            resp = client.post(f"/api/models/{model_id}/versions", params=params, content=model)
            assert resp.status_code == 201, resp.text

        try:
            return timed(runs, gap, upload)
        finally:
            client.close()
            ctx.db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--gap", type=float, default=1.0)
    parser.add_argument("--model", type=Path, default=Path("tests/vectors/model.tflite"))
    args = parser.parse_args()
    model = args.model.read_bytes()
    in_process(model)  # warm: library build/load, imports
    check_model(model)
    print(summary("in-process check", timed(args.runs, 0, lambda _: in_process(model))))
    print(summary("child check", timed(args.runs, args.gap, lambda _: check_model(model))))
    child = packages.check_model
    packages.check_model = in_process  # type: ignore[assignment]
    print(summary("upload, in-process check", upload_times(model, args.runs, args.gap)))
    packages.check_model = child
    print(summary("upload, child check", upload_times(model, args.runs, args.gap)))


if __name__ == "__main__":
    main()
