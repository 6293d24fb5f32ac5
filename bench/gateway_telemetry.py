"""Telemetry ingest through a real Mosquitto into the database, against the broker's own C rate.

    .venv/bin/python bench/gateway_telemetry.py [--devices 2000] [--reports 10] [--publishers 4]
        [--connections 10] [--databases sqlite,postgres] [--postgres postgresql+psycopg://postgres@127.0.0.1:5432]

In one run, on a private Mosquitto (tinyfleet.server.devbroker, `max_queued_messages 0` so that the broker
itself never drops what a slow subscriber has not taken yet):

(a) the broker's C rate: `mosquitto_pub -l` -> `mosquitto_sub`, QoS 1, as many messages of the same size
    as (b) sends, timed from the publisher's start until the subscriber has them all;
(b) for each database: the control plane in-process (gateway, batching telemetry writer), `--devices`
    provisioned devices reporting a running model, and `--publishers` processes with `--connections`
    paho clients each publishing `--reports` PROTOCOL 4.5 reports per device (one report a message,
    encoded by the simulator's own `telemetry_report`, boot 1 and seq 0..), QoS 1. Timed from the first
    publish until the server has stored every report; then every report is accounted for from the
    database: sent (acknowledged by the broker to a publisher), stored (distinct (device, seq) rows),
    duplicates dropped, lost (sent but not stored: must be 0).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tinyfleet.device.frames import TELEMETRY_CLASSES, ModelTelemetry
from tinyfleet.server.devbroker import DevBroker
from tinyfleet.sim.agent import telemetry_report

SHA = "5e" * 32
BROKER_CONFIG = ["max_queued_messages 0"]


def payload(seq: int) -> bytes:
    """One message as a simulated device sends it (tinyfleet/sim/agent.py _telemetry_tick)."""
    hist = (40, 35, 25) + (0,) * (TELEMETRY_CLASSES - 3)
    reading = ModelTelemetry(
        latency_estimated=True,
        model_sha256=SHA,
        inferences=100,
        errors=1,
        classified=100,
        cpu_hz=64_000_000,
        arena_bytes=6144,
        cycles_total=100 * 120_000,
        confidence_q16_total=100 * 52_000,
        histogram=hist,
        histogram_other=0,
    )
    report = telemetry_report(reading, None)
    report["boot"], report["seq"] = 1, seq
    return json.dumps({"reports": [report]}, separators=(",", ":")).encode()


# --- (a) the broker's C rate -------------------------------------------------------------------------


def c_rate(broker: DevBroker, n: int, size: int) -> float:
    topic = "bench/c"
    host, port = broker.host, str(broker.port)
    sub = subprocess.Popen(
        ["mosquitto_sub", "-h", host, "-p", port, "-t", topic, "-q", "1", "-C", str(n), "-V", "mqttv5"],
        stdout=subprocess.PIPE,
    )
    time.sleep(0.5)  # subscribed before the first publish
    line = b"x" * size + b"\n"
    start = time.monotonic()
    # -M: up to 1000 messages in flight, so the publisher does not wait a round trip every 20
    pub = ["mosquitto_pub", "-h", host, "-p", port, "-t", topic, "-q", "1", "-l", "-V", "mqttv5"]
    pub += ["-M", "1000"]
    subprocess.run(pub, input=line * n, check=True)
    out, _ = sub.communicate(timeout=600)
    elapsed = time.monotonic() - start
    got = out.count(b"\n")
    if got != n:
        raise SystemExit(f"mosquitto_sub received {got} of {n} messages")
    return n / elapsed


def paho_rate(broker: DevBroker, n: int, size: int) -> float:
    """The same messages into one paho client that does nothing but acknowledge them (manual acks, MQTT
    v5, the gateway's settings): the most a single Python MQTT connection takes, with no database."""
    import threading

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    got, done = [0], threading.Event()

    def on_message(client: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        client.ack(msg.mid, msg.qos)
        got[0] += 1
        if got[0] == n:
            done.set()

    c = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id="bench-paho",
        protocol=mqtt.MQTTv5,
        manual_ack=True,
    )
    c.on_message = on_message
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.ReceiveMaximum = 5000
    c.connect(broker.host, broker.port, properties=props)
    c.loop_start()
    c.subscribe("bench/paho", 1)
    time.sleep(0.5)
    start = time.monotonic()
    pub = ["mosquitto_pub", "-h", broker.host, "-p", str(broker.port), "-t", "bench/paho", "-q", "1", "-l"]
    subprocess.run([*pub, "-V", "mqttv5", "-M", "1000"], input=(b"x" * size + b"\n") * n, check=True)
    if not done.wait(600):
        raise SystemExit(f"the paho client received {got[0]} of {n} messages")
    elapsed = time.monotonic() - start
    c.disconnect()
    c.loop_stop()
    return n / elapsed


# --- (b) devices publishing into the gateway -----------------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, byte = n >> 7, n & 0x7F
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + _varint(len(body)) + body


def _string(text: str) -> bytes:
    raw = text.encode()
    return len(raw).to_bytes(2, "big") + raw


class WireConnection:
    """A device-side MQTT 3.1.1 connection that only publishes, packets encoded ahead: the publishing
    processes then cost the machine little next to the server they load (paho costs ~50 us a message)."""

    def __init__(self, host: str, port: int, client_id: str) -> None:
        import socket

        self.sock = socket.create_connection((host, port))
        # CONNECT: protocol "MQTT" level 4, clean session, keep-alive 600 s
        self.sock.sendall(_packet(0x10, _string("MQTT") + b"\x04\x02\x02\x58" + _string(client_id)))
        if self._read(4)[:2] != b"\x20\x02":
            raise SystemExit("broker refused the publisher's CONNECT")
        self.packets: list[bytes] = []
        self.acked = 0

    def add(self, topic: str, body: bytes) -> None:
        mid = len(self.packets) % 65535 + 1
        self.packets.append(_packet(0x32, _string(topic) + mid.to_bytes(2, "big") + body))  # PUBLISH QoS 1

    def _read(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise SystemExit("broker closed the publisher's connection")
            buf += chunk
        return buf

    def count_acks(self) -> None:
        """Read PUBACKs (4 bytes each in MQTT 3.1.1) until every publish is acknowledged."""
        pending = b""
        while self.acked < len(self.packets):
            pending += self.sock.recv(65536)
            whole = len(pending) // 4
            self.acked += sum(1 for i in range(whole) if pending[4 * i] == 0x40)
            pending = pending[4 * whole :]


def publisher(host: str, port: int, ids: list[str], reports: int, conns: int, go: Any, out: Any) -> None:
    """One process: `conns` connections share these devices (a device always on the same one, so its
    seqs arrive in order); every report published QoS 1, then how many the broker acknowledged is put
    on `out`."""
    import threading

    links = [WireConnection(host, port, f"bench-{os.getpid()}-{i}") for i in range(conns)]
    for s in range(reports):  # built before the clock starts
        for j, d in enumerate(ids):
            links[j % conns].add(f"tf/{d}/telemetry", payload(s))
    readers = [threading.Thread(target=link.count_acks) for link in links]
    for t in readers:
        t.start()
    out.put("ready")
    go.wait()
    for link in links:
        link.sock.sendall(b"".join(link.packets))
    for t in readers:
        t.join(600)
    out.put(sum(link.acked for link in links))
    for link in links:
        link.sock.sendall(b"\xe0\x00")  # DISCONNECT
        link.sock.close()


def ingest_run(broker: DevBroker, url: str | None, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from sqlalchemy import text

    from tinyfleet.server.stack import run_stack

    with run_stack(broker.url, database_url=url, data_dir=tmp, tick_seconds=1.0) as st:
        assert st.ctx.gateway is not None
        with st.client() as c:
            body = {"count": args.devices, "prefix": "bench", "hardware_class": 1}
            answer = c.post("/api/devices/bulk", json=body, timeout=600)
            answer.raise_for_status()
        with st.ctx.db.connect() as conn:
            ids = [row[0] for row in conn.execute(text("SELECT id FROM devices ORDER BY id"))]
        slot = {"valid": True, "model_sha256": SHA, "sequence": 1}
        state = {"runtime_version": 256, "hardware_class": 1, "phase": "idle", "active_slot": 0}
        reported = json.dumps({**state, "slots": [slot]}).encode()
        for d in ids:
            st.ctx.messages.handle(f"tf/{d}/reported", reported)
        ctx = mp.get_context("spawn")
        go, out = ctx.Event(), ctx.Queue()
        procs = [
            ctx.Process(
                target=publisher,
                args=(
                    broker.host,
                    broker.port,
                    ids[k :: args.publishers],
                    args.reports,
                    args.connections,
                    go,
                    out,
                ),
            )
            for k in range(args.publishers)
        ]
        for p in procs:
            p.start()
        for _ in procs:  # connected and payloads built: the clock starts with the first publish
            if out.get(timeout=600) != "ready":
                raise SystemExit("a publisher failed to start")
        stats = st.ctx.stats
        total = len(ids) * args.reports
        base = stats.events["telemetry_rows"] + stats.events["telemetry_duplicates"]
        cpu_before = thread_cpu()
        start = time.monotonic()
        go.set()
        while stats.events["telemetry_rows"] + stats.events["telemetry_duplicates"] - base < total:
            if time.monotonic() - start > 900:
                break
            time.sleep(0.01)
        elapsed = time.monotonic() - start
        cpu = {k: v - cpu_before.get(k, 0.0) for k, v in thread_cpu().items()}
        sent = sum(out.get(timeout=600) for _ in procs)
        for p in procs:
            p.join(60)
        with st.ctx.db.connect() as conn:
            rows = conn.execute(text("SELECT COUNT(*) FROM telemetry")).scalar_one()
            distinct = conn.execute(
                text("SELECT COUNT(*) FROM (SELECT DISTINCT device_id, seq FROM telemetry) AS t")
            ).scalar_one()
        events = stats.snapshot()["events"]
        return {
            "sent": sent,
            "stored": distinct,
            "rows": rows,
            "duplicates": events.get("telemetry_duplicates", 0),
            "lost": sent - distinct,
            "rejected": sum(stats.snapshot()["rejected"].values()) + stats.malformed["telemetry"],
            "seconds": elapsed,
            "batches": events.get("telemetry_batches", 0),
            "backpressure": events.get("telemetry_backpressure", 0),
            "db_retries": events.get("db_retries", 0),
            "cpu": ", ".join(
                f"{k} {v:.1f} s" for k, v in sorted(cpu.items(), key=lambda kv: -kv[1]) if v >= 0.1
            ),
        }


def thread_cpu() -> dict[str, float]:
    """CPU seconds so far of each thread of this process, by name (Linux /proc)."""
    import threading

    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for t in threading.enumerate():
        try:
            fields = Path(f"/proc/self/task/{t.native_id}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[t.name] = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    return out


def postgres_database(base: str) -> tuple[str, str]:
    """A fresh database on the server at `base` (dropped by drop_database)."""
    import psycopg

    name = f"tinyfleet_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{base.replace('+psycopg', '')}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{base}/{name}", name


def drop_database(base: str, name: str) -> None:
    import psycopg

    with psycopg.connect(f"{base.replace('+psycopg', '')}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=2000)
    ap.add_argument("--reports", type=int, default=10, help="per device (the burst allows 120)")
    ap.add_argument("--publishers", type=int, default=4, help="publishing processes")
    ap.add_argument("--connections", type=int, default=10, help="MQTT connections per publishing process")
    ap.add_argument("--databases", default="sqlite,postgres")
    ap.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432")
    args = ap.parse_args()
    total = args.devices * args.reports
    size = len(payload(0))
    print(f"load average before: {os.getloadavg()}")
    with (
        tempfile.TemporaryDirectory() as tmp,
        DevBroker(workdir=Path(tmp) / "broker", extra_config=BROKER_CONFIG) as broker,
    ):
        rate_c = c_rate(broker, total, size)
        what = f"broker C rate, mosquitto_pub -> mosquitto_sub, {total} x {size} B QoS 1"
        print(f"| {what} | {rate_c:,.0f} msg/s |")
        rate_p = paho_rate(broker, total, size)
        what = "one paho client that only acks, same messages"
        print(f"| {what} | {rate_p:,.0f} msg/s ({rate_p / rate_c:.2f}x broker) |")
        for db in args.databases.split(","):
            dropped: tuple[str, str] | None = None
            url = None
            if db == "postgres":
                url, name = postgres_database(args.postgres)
                dropped = (args.postgres, name)
            try:
                r = ingest_run(broker, url, args, Path(tmp) / f"server-{db}")
            finally:
                if dropped:
                    drop_database(*dropped)
            rate = r["stored"] / r["seconds"]
            print(
                f"| {db}: {args.devices} devices x {args.reports} reports | {rate:,.0f} msg/s = rows/s"
                f" ({rate / rate_c:.2f}x broker) in {r['seconds']:.2f} s | sent {r['sent']}, stored"
                f" {r['stored']} ({r['rows']} rows), duplicates {r['duplicates']}, rejected {r['rejected']},"
                f" lost {r['lost']} | {r['batches']} batches (mean {r['rows'] / max(1, r['batches']):.0f}),"
                f" back-pressure {r['backpressure']}, db retries {r['db_retries']} |"
            )
            print(f"  server threads' CPU during the run: {r['cpu']}")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
