"""Telemetry messages through a real Mosquitto into the gateway until stored (one report per message).

    .venv/bin/python bench/gateway_telemetry.py [--devices 50] [--reports 100] [--database-url URL]

Starts a private Mosquitto on a free port (tinyfleet.server.devbroker) and the control plane in-process,
provisions N devices that report a running model, then every device publishes its reports (QoS 1) as
fast as the broker takes them, all at once from threads of this process. Prints the time from the first
publish until every row is in the database, and messages per second.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tinyfleet.server.devbroker import DevBroker
from tinyfleet.server.stack import run_stack

SHA = "ab" * 32


def reported() -> bytes:
    slot = {"valid": True, "model_sha256": SHA, "sequence": 1}
    doc = {"runtime_version": 256, "hardware_class": 1, "phase": "idle", "active_slot": 0, "slots": [slot]}
    return json.dumps(doc).encode()


def report(seq: int) -> bytes:
    r = {
        "ts": time.time(),
        "model_sha256": SHA,
        "inference_count": 10,
        "latency_us_mean": 900.0,
        "class_histogram": [6, 4],
        "confidence_mean": 0.7,
        "errors": 0,
        "arena_bytes": 2048,
        "boot": 1,
        "seq": seq,
    }
    return json.dumps({"reports": [r]}).encode()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=50)
    ap.add_argument("--reports", type=int, default=100)
    ap.add_argument("--database-url", default=None)
    args = ap.parse_args()
    total = args.devices * args.reports
    with tempfile.TemporaryDirectory() as tmp, DevBroker(workdir=Path(tmp) / "broker") as broker:  # noqa: SIM117
        with run_stack(broker.url, database_url=args.database_url, data_dir=Path(tmp) / "server") as st:
            assert st.ctx.gateway is not None
            with st.client() as c:
                for i in range(args.devices):
                    c.post("/api/devices", json={"id": f"b-{i}", "hardware_class": 1}).raise_for_status()
            clients = []
            for i in range(args.devices):
                cl = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
                cl.connect(broker.host, broker.port)
                cl.loop_start()
                cl.publish(f"tf/b-{i}/reported", reported(), qos=1).wait_for_publish(5)
                clients.append(cl)
            st.ctx.gateway.wait_idle(30)
            with st.ctx.db.connect() as conn:
                before = conn.execute(text("SELECT COUNT(*) FROM telemetry")).scalar_one()

            def send(i: int) -> None:
                infos = [
                    clients[i].publish(f"tf/b-{i}/telemetry", report(n), qos=1) for n in range(args.reports)
                ]
                for info in infos:
                    info.wait_for_publish(60)

            start = time.monotonic()
            threads = [threading.Thread(target=send, args=(i,)) for i in range(args.devices)]
            for t in threads:
                t.start()
            stored = 0
            while stored < total and time.monotonic() - start < 300:
                time.sleep(0.05)
                with st.ctx.db.connect() as conn:
                    stored = conn.execute(text("SELECT COUNT(*) FROM telemetry")).scalar_one() - before
            elapsed = time.monotonic() - start
            for t in threads:
                t.join()
            for cl in clients:
                cl.disconnect()
                cl.loop_stop()
            print(f"| devices x reports | {args.devices} x {args.reports} = {total} messages |")
            print(f"| stored | {stored} |")
            print(f"| wall time until all stored | {elapsed:.2f} s |")
            print(f"| messages stored per second | {stored / elapsed:.0f} |")
            print(f"| gateway events | {st.ctx.stats.snapshot()['events']} |")


if __name__ == "__main__":
    main()
