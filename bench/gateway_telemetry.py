"""Telemetry ingest through a real Mosquitto into the database, against the broker's own C rate.

    .venv/bin/python bench/gateway_telemetry.py [--devices 2000] [--reports 10] [--publishers 4]
        [--connections 10] [--databases sqlite,postgres] [--postgres postgresql+psycopg://postgres@127.0.0.1:5432]
        [--replicas 0,1,2]

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
(c) with --replicas N,... (PostgreSQL only; 0, the default, is (b)'s in-process server): the same
    traffic into N real server processes (`tinyfleet server run`) on one database, members of one MQTT
    shared subscription (issue 16: `$share/tinyfleet/tf/+/telemetry`), so the broker hands each message
    to one of them; stored rows are counted in the database, each process's CPU time read from /proc.
Each ingest run is printed as it ends, beside a C rate measured just before it (the machine's load moves).
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
        procs, go, out = start_publishers(broker, ids, args)
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


def start_publishers(
    broker: DevBroker, ids: list[str], args: argparse.Namespace
) -> tuple[list[Any], Any, Any]:
    """The publishing processes, connected and with their packets built (the clock starts at go.set())."""
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
    for _ in procs:
        if out.get(timeout=600) != "ready":
            raise SystemExit("a publisher failed to start")
    return procs, go, out


def replicas_run(broker: DevBroker, url: str, args: argparse.Namespace, tmp: Path, n: int) -> dict[str, Any]:
    """(c): n server processes on one PostgreSQL database, one shared subscription."""
    import httpx
    from sqlalchemy import text

    from tinyfleet.server.db import make_engine, upgrade_to_head
    from tinyfleet.server.devbroker import free_port
    from tinyfleet.server.services.messages import DeviceMessages

    tmp.mkdir(parents=True, exist_ok=True)
    engine = make_engine(url)
    upgrade_to_head(engine)  # once, before the replicas start
    token = f"bench-{uuid.uuid4().hex}"
    auth = {"Authorization": f"Bearer {token}"}
    servers: list[tuple[subprocess.Popen[bytes], str]] = []
    try:
        for i in range(n):
            env = {k: v for k, v in os.environ.items() if not k.startswith("TINYFLEET_")}
            env.update(
                # A group and names of this run's own: the broker keeps an earlier run's server sessions
                # (persistent, 7-day expiry) as members of its group, and queues their share for them.
                TINYFLEET_MQTT_SHARED_GROUP=f"bench-{token[-8:]}",
                TINYFLEET_REPLICA_NAME=f"bench-{token[-8:]}-{i}",
                TINYFLEET_DATABASE_URL=url,
                TINYFLEET_MQTT_URL=broker.url,
                TINYFLEET_DATA_DIR=str(tmp / f"replica-{i}"),
                TINYFLEET_API_TOKEN=token,
            )
            port = free_port()
            with open(tmp / f"replica-{i}.log", "ab") as log:
                cmd = [sys.executable, "-m", "tinyfleet.cli", "server", "run", "--port", str(port)]
                proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
            servers.append((proc, f"http://127.0.0.1:{port}"))
        for i, (proc, base) in enumerate(servers):
            _wait_ready(proc, base, tmp / f"replica-{i}.log")
        body = {"count": args.devices, "prefix": "bench", "hardware_class": 1}
        httpx.post(
            f"{servers[0][1]}/api/devices/bulk", json=body, headers=auth, timeout=600
        ).raise_for_status()
        with engine.connect() as conn:
            ids = [row[0] for row in conn.execute(text("SELECT id FROM devices ORDER BY id"))]
        slot = {"valid": True, "model_sha256": SHA, "sequence": 1}
        state = {"runtime_version": 256, "hardware_class": 1, "phase": "idle", "active_slot": 0}
        reported = json.dumps({**state, "slots": [slot]}).encode()
        DeviceMessages(engine, default_chunk_size=1024).handle_batch(
            [(f"tf/{d}/reported", reported) for d in ids], lambda _out: None
        )
        procs, go, out = start_publishers(broker, ids, args)
        total = len(ids) * args.reports
        cpu_before = [process_cpu(proc.pid) for proc, _ in servers]
        start = time.monotonic()
        go.set()
        count, changed = 0, start
        while count < total and time.monotonic() - changed < 60:  # a minute without progress: stop
            time.sleep(0.1)
            with engine.connect() as conn:
                now_count = conn.execute(text("SELECT COUNT(*) FROM telemetry")).scalar_one()
            if now_count != count:
                count, changed = now_count, time.monotonic()
        elapsed = changed - start  # until the last row was seen
        cpu = [process_cpu(proc.pid) - before for (proc, _), before in zip(servers, cpu_before, strict=True)]
        sent = sum(out.get(timeout=600) for _ in procs)
        for p in procs:
            p.join(60)
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT COUNT(*) FROM telemetry")).scalar_one()
            distinct = conn.execute(
                text("SELECT COUNT(*) FROM (SELECT DISTINCT device_id, seq FROM telemetry) AS t")
            ).scalar_one()
        metrics = [_metrics(base, auth) for _, base in servers]
    finally:
        for proc, _ in servers:
            proc.terminate()
        for proc, _ in servers:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        engine.dispose()

    def total_of(name: str) -> float:
        return sum(v for m in metrics for k, v in m.items() if k.startswith(name))

    stored_by = [m.get("tinyfleet_telemetry_reports_stored_total", 0.0) for m in metrics]
    return {
        "sent": sent,
        "stored": distinct,
        "rows": rows,
        "duplicates": int(total_of("tinyfleet_telemetry_duplicates_total")),
        "lost": sent - distinct,
        "rejected": int(total_of("tinyfleet_telemetry_rejected_total")),
        "seconds": elapsed,
        "batches": int(total_of("tinyfleet_telemetry_batches_total")),
        "backpressure": int(total_of('tinyfleet_gateway_events_total{event="telemetry_backpressure"}')),
        "db_retries": int(total_of("tinyfleet_db_retries_total")),
        "cpu": ", ".join(
            f"replica {i}: {c:.1f} s CPU, {int(n)} rows"
            for i, (c, n) in enumerate(zip(cpu, stored_by, strict=True))
        ),
    }


def _wait_ready(proc: subprocess.Popen[bytes], base: str, log: Path) -> None:
    """Until the server answers /readyz (database, migrations, MQTT gateway connected)."""
    import httpx

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-1500:]
            raise SystemExit(f"a replica exited with {proc.returncode}; the end of its log:\n{tail}")
        try:
            if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"replica at {base} not ready within 120 s")


def _metrics(base: str, auth: dict[str, str]) -> dict[str, float]:
    """A replica's /metrics as {sample name with labels: value}."""
    import httpx

    out: dict[str, float] = {}
    for line in httpx.get(f"{base}/metrics", headers=auth, timeout=30).text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def process_cpu(pid: int) -> float:
    """CPU seconds so far of a process and its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
    ap.add_argument(
        "--replicas", default="0", help="PostgreSQL runs: 0 = in-process server, N = N server processes"
    )
    args = ap.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # each row as it is measured
    replicas = [int(n) for n in args.replicas.split(",")]
    runs = [(db, n) for db in args.databases.split(",") for n in (replicas if db == "postgres" else [0])]
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
        for k, (db, n) in enumerate(runs):
            if k > 0:  # the C rate again, just before this run
                rate_c = c_rate(broker, total, size)
                print(f"| broker C rate again, {os.getloadavg()[0]:.2f} load | {rate_c:,.0f} msg/s |")
            dropped: tuple[str, str] | None = None
            url = None
            if db == "postgres":
                url, name = postgres_database(args.postgres)
                dropped = (args.postgres, name)
            work = Path(tmp) / f"server-{k}"
            try:
                if n > 0:
                    assert url is not None, "replicas share a PostgreSQL database"
                    r = replicas_run(broker, url, args, work, n)
                    db = f"{db}, {n} server process{'es' if n > 1 else ''}"
                else:
                    r = ingest_run(broker, url, args, work)
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
            print(f"  server CPU during the run: {r['cpu']}; load average {os.getloadavg()}")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
