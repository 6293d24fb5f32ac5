"""What a device login costs with a certificate (TLS, EC P-256 client certificate, CRL check) against a
password (plain MQTT, mosquitto's PBKDF2 password check): N devices connect one after the other to a real
Mosquitto (DevBroker), each timed from connect() to CONNACK; the TLS context each simulated device builds
(sim/device_tls.py) is timed apart.

    .venv/bin/python bench/tls_connect.py --devices 300
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tinyfleet.server.broker_acl import DEPLOY_SERVICE_USER
from tinyfleet.server.devbroker import BrokerTls, DevBroker
from tinyfleet.server.services.fleet_ca import FleetCA, write_pair
from tinyfleet.sim.device_tls import device_tls_context


def _login(broker: DevBroker, client: mqtt.Client) -> float:
    """Seconds from connect() to a successful CONNACK."""
    done = threading.Event()
    ok: list[bool] = []
    client.on_connect = lambda _c, _u, _f, reason, _p: (ok.append(not reason.is_failure), done.set())
    t0 = time.perf_counter()
    client.connect(broker.host, broker.port, keepalive=30)
    while not done.is_set():
        client.loop(0.01)
    seconds = time.perf_counter() - t0
    client.disconnect()
    if not ok[0]:
        raise SystemExit("the broker refused a login")
    return seconds


def _client(device_id: str) -> mqtt.Client:
    return mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device_id, protocol=mqtt.MQTTv5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=300)
    ap.add_argument("--nagle", action="store_true", help="broker option set_tcp_nodelay false")
    args = ap.parse_args()
    print(f"# cores {os.cpu_count()}, load {os.getloadavg()[0]:.2f}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="tinyfleet-bench-tls-") as tmp:
        ca = FleetCA.open(Path(tmp) / "ca", None)
        cert, key = write_pair(Path(tmp), "broker", ca.issue_broker())
        issued = [ca.issue_device(f"dev-{i:05d}") for i in range(args.devices)]
        ca.write_crl([(ca.issue_device("dev-revoked").serial, time.time())])  # a CRL with an entry
        t0 = time.perf_counter()
        contexts = [device_tls_context(c.cert_pem, c.key_pem or "", ca.cert_pem) for c in issued]
        context_ms = (time.perf_counter() - t0) / len(issued) * 1000
        tls = BrokerTls(ca.cert_path, cert, key, ca.crl_path)
        extra = ["set_tcp_nodelay false"] if args.nagle else []  # DevBroker(tls=...) sets it true
        with DevBroker(
            tls=tls, admin_users=[DEPLOY_SERVICE_USER], workdir=Path(tmp) / "tls", extra_config=extra
        ) as broker:
            tls_times = []
            for i, context in enumerate(contexts):
                client = _client(f"dev-{i:05d}")
                client.tls_set_context(context)
                tls_times.append(_login(broker, client))
        users = {f"dev-{i:05d}": f"password-{i}" for i in range(args.devices)}
        with DevBroker(users=users, admin_users=[DEPLOY_SERVICE_USER], workdir=Path(tmp) / "pw") as broker:
            pw_times = []
            for name, password in users.items():
                client = _client(name)
                client.username_pw_set(name, password)
                pw_times.append(_login(broker, client))
    for label, times in (("certificate (TLS)", tls_times), ("password (plain)", pw_times)):
        ms = [t * 1000 for t in times]
        print(
            f"{label}: {len(ms)} logins, median {statistics.median(ms):.2f} ms,"
            f" p95 {sorted(ms)[int(len(ms) * 0.95)]:.2f} ms, mean {statistics.fmean(ms):.2f} ms"
        )
    print(f"device TLS context (load CA + certificate + key): {context_ms:.2f} ms each")
    print(f"# load after {os.getloadavg()[0]:.2f}", file=sys.stderr)


if __name__ == "__main__":
    main()
