"""Leader takeover time with two control-plane replicas (`tinyfleet server run`) on one PostgreSQL:
SIGKILL the leader, time until the follower's /healthz says it leads (polled every 20 ms), restart the
killed replica under its name, repeat. The rollout engine's takeover is bounded by
TINYFLEET_LEADER_CHECK_SECONDS (the followers' lock attempt period, 1 s by default).

    .venv/bin/python bench/replica_takeover.py --rounds 5 \
        --postgres postgresql+psycopg://postgres@127.0.0.1:5432
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import psycopg

REPO = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _leader(port: int) -> bool | None:
    try:
        r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
    except httpx.HTTPError:
        return None
    return bool(r.json().get("leader")) if r.status_code == 200 else None


def _wait(predicate: object, timeout: float) -> float:
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if predicate():  # type: ignore[operator]
            return time.monotonic() - began
        time.sleep(0.02)
    raise SystemExit(f"timed out after {timeout:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432")
    parser.add_argument("--check-seconds", default="1.0", help="TINYFLEET_LEADER_CHECK_SECONDS")
    args = parser.parse_args()
    name = f"tfbench_takeover_{uuid.uuid4().hex[:8]}"
    admin = args.postgres.replace("postgresql+psycopg://", "postgresql://") + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    work = Path(tempfile.mkdtemp(prefix="tf-takeover-"))
    procs: dict[str, subprocess.Popen[bytes]] = {}
    ports = {"tinyfleet-a": _free_port(), "tinyfleet-b": _free_port()}

    def start(replica: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TINYFLEET_")}
        env.update(
            TINYFLEET_REPLICA_NAME=replica,
            TINYFLEET_DATABASE_URL=f"{args.postgres}/{name}",
            TINYFLEET_DATA_DIR=str(work / replica),
            TINYFLEET_SIGNING_KEY=str(work / "server.pem"),
            TINYFLEET_LEADER_CHECK_SECONDS=args.check_seconds,
        )
        cmd = [sys.executable, "-m", "tinyfleet.cli", "server", "run", "--port", str(ports[replica])]
        with open(work / f"{replica}.log", "ab") as log:
            procs[replica] = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        _wait(lambda: _leader(ports[replica]) is not None, 120)

    try:
        from tinyfleet.signing.keys import generate_private_key, save_keypair

        save_keypair(work / "server", generate_private_key())
        for replica in ports:
            start(replica)
        times = []
        for _ in range(args.rounds):
            leader = next(r for r in ports if _leader(ports[r]))
            follower = next(r for r in ports if r != leader)
            os.kill(procs[leader].pid, signal.SIGKILL)
            procs[leader].wait()
            took = _wait(lambda f=follower: _leader(ports[f]), 60)  # type: ignore[misc]
            times.append(took)
            print(f"{leader} killed: {follower} leads after {took:.3f} s", flush=True)
            start(leader)
        print(
            f"takeover over {len(times)} rounds (check period {args.check_seconds} s):"
            f" median {statistics.median(times):.3f} s, min {min(times):.3f} s, max {max(times):.3f} s"
        )
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
