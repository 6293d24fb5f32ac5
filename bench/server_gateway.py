"""Control-plane gateway throughput: chunk serving through a real Mosquitto, and device-message handling.

    .venv/bin/python bench/server_gateway.py [--devices 50] [--chunk-size 1024]

Starts a private Mosquitto on a free port and the control plane in-process (SQLite), uploads a real
model, then N MQTT clients (paho, MQTT v5, threads of this same process, so they share its GIL with the
server: the figure is a lower bound) each download the package chunk by chunk with one request
outstanding, all at once. Also measures the in-process handler on status and reported messages (one
SQLite transaction each). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tinyfleet.server.services.messages import DeviceMessages, decode_chunk
from tinyfleet.server.stack import run_stack

MODEL = Path(__file__).resolve().parents[2] / "shared" / "models" / "micro_speech_quantized.tflite"


def start_broker(folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = folder / "mosquitto.conf"
    user = "user root\n" if os.geteuid() == 0 else ""
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n{user}")
    proc = subprocess.Popen(
        [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return proc, port
        except OSError:
            time.sleep(0.02)
    proc.kill()
    raise SystemExit("mosquitto did not start")


def download(
    port: int, device_id: str, package_id: str, size: int, chunk: int, out: list[float], go: threading.Barrier
) -> None:
    replies: queue.Queue[bytes] = queue.Queue()
    ready = threading.Event()
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id=device_id, protocol=mqtt.MQTTv5
    )
    client.on_connect = lambda c, *_: (c.subscribe(f"tf/{device_id}/chunk", qos=1), ready.set())
    client.on_message = lambda _c, _u, msg: replies.put(bytes(msg.payload))
    client.connect("127.0.0.1", port)
    client.loop_start()
    ready.wait(10)
    time.sleep(0.2)  # let the subscription settle before the clock starts
    go.wait()
    got = 0
    start = time.perf_counter()
    while got < size:
        req = json.dumps({"package_id": package_id, "offset": got, "length": chunk}).encode()
        client.publish(f"tf/{device_id}/chunk/req", req, qos=1)
        got += len(decode_chunk(replies.get(timeout=30))[3])
    out.append(time.perf_counter() - start)
    client.disconnect()
    client.loop_stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=50)
    ap.add_argument("--chunk-size", type=int, default=1024)
    ap.add_argument("--messages", type=int, default=2000)
    args = ap.parse_args()
    if not MODEL.exists():
        raise SystemExit(f"needs {MODEL}")
    with tempfile.TemporaryDirectory() as tmp:
        proc, port = start_broker(Path(tmp))
        try:
            with run_stack(f"mqtt://127.0.0.1:{port}", data_dir=Path(tmp) / "server") as stack:
                with stack.client() as c:
                    c.put("/api/hardware-classes/1", json={"name": "bench", "chunk_size": args.chunk_size})
                    model = c.post("/api/models", json={"name": "bench"}).json()
                    mv = c.post(
                        f"/api/models/{model['id']}/versions",
                        params={"version": "1.0.0", "hardware_class": 1},
                        content=MODEL.read_bytes(),
                    ).json()
                    pkg = mv["packages"][0]
                    for i in range(args.devices):
                        c.post("/api/devices", json={"id": f"bench-{i:04d}", "hardware_class": 1})
                times: list[float] = []
                go = threading.Barrier(args.devices + 1)
                threads = [
                    threading.Thread(
                        target=download,
                        args=(port, f"bench-{i:04d}", pkg["id"], pkg["size"], args.chunk_size, times, go),
                    )
                    for i in range(args.devices)
                ]
                for t in threads:
                    t.start()
                go.wait()
                t0 = time.perf_counter()
                for t in threads:
                    t.join()
                wall = time.perf_counter() - t0
                chunks = args.devices * -(-pkg["size"] // args.chunk_size)
                handler = DeviceMessages(stack.ctx.db, default_chunk_size=args.chunk_size)
                status = json.dumps({"online": True}).encode()
                t1 = time.perf_counter()
                for i in range(args.messages):
                    handler.handle(f"tf/bench-{i % args.devices:04d}/presence", status)
                per_msg = (time.perf_counter() - t1) / args.messages
                chunk_req = json.dumps(
                    {"package_id": pkg["id"], "offset": 0, "length": args.chunk_size}
                ).encode()
                t2 = time.perf_counter()
                for i in range(args.messages):
                    handler.handle(f"tf/bench-{i % args.devices:04d}/chunk/req", chunk_req)
                per_chunk = (time.perf_counter() - t2) / args.messages
        finally:
            proc.terminate()
            proc.wait()
    print(f"| package | {pkg['size']} bytes, chunk {args.chunk_size} B, {args.devices} devices at once |")
    print("|---|---:|")
    print(f"| wall time, all downloads | {wall:.2f} s |")
    print(f"| chunks served per second (through Mosquitto) | {chunks / wall:.0f} |")
    print(f"| payload throughput | {pkg['size'] * args.devices / wall / 1024:.0f} KiB/s |")
    print(f"| one device's download, median | {sorted(times)[len(times) // 2]:.2f} s |")
    print(f"| chunk request handled in-process (no broker) | {per_chunk * 1e6:.0f} us |")
    print(f"| presence message handled in-process (SQLite commit) | {per_msg * 1e3:.2f} ms |")


if __name__ == "__main__":
    main()
