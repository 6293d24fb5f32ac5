"""Delta updates (server): bytes sent per device for a v1 -> v2 rollout, with and without payload variants.

Real pieces: Mosquitto (anonymous, local), the control plane in-process (SQLite), simulated devices that
drive the C runtime (signature, delta decode into flash, self-test, confirm). The server packages the
uploaded .tflite files itself (server key, engine-checked, self-test filled), so it may re-sign them as
compressed or delta variants. Each run: roll v1 out to fresh devices, then v2; the figures are the API's
per-action `bytes_sent` for the v2 rollout. Also times one variant build (encode + sign) per pair.

    .venv/bin/python bench/server_delta.py --devices 20 --markdown
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tinyfleet.server.devbroker import DevBroker
from tinyfleet.server.stack import run_stack
from tinyfleet.signing import delta
from tinyfleet.sim.cli import provision_fleet
from tinyfleet.sim.fleet import FleetConfig, LocalFleet
from tinyfleet.sim.profiles import FleetMix, get_profile
from tinyfleet.sim.server_api import ServerApi

PAIRS = Path(__file__).resolve().parents[2] / "shared" / "models" / "pairs"
CASES = [("micro_speech", "micro_speech.0.tflite", "micro_speech.2.tflite")]
CASES += [("hello_world", "hello_world_int8.0.tflite", "hello_world_int8.1.tflite")]


def wait_rollout(api: ServerApi, rollout_id: int, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = api.rollout(rollout_id)
        if r["state"] in ("completed", "paused", "rolled_back"):
            return r
        time.sleep(0.2)
    raise SystemExit(f"rollout {rollout_id} did not finish in {timeout:.0f} s")


def run_case(
    broker: DevBroker, name: str, v1: bytes, v2: bytes, devices: int, variants: bool
) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory() as tmp,
        run_stack(broker.url, data_dir=tmp, tick_seconds=0.2, payload_variants=variants) as stack,
    ):
        with stack.client() as c:
            model = c.post("/api/models", json={"name": name}).json()
            versions = []
            for version, data in (("1.0.0", v1), ("2.0.0", v2)):
                resp = c.post(
                    f"/api/models/{model['id']}/versions",
                    params={"version": version, "hardware_class": 1},
                    content=data,
                )
                resp.raise_for_status()
                versions.append(resp.json())
        api = ServerApi(stack.url, stack.token)
        prefix = f"{name[:6]}{'d' if variants else 'r'}"
        specs, provisioned = provision_fleet(
            api, devices, FleetMix.single(get_profile("lan")), prefix, prefix
        )
        config = FleetConfig(broker.host, broker.port, provisioned[0].trusted_keys, tuple(specs))
        fleet = LocalFleet(config).start()
        try:
            if not fleet.wait_online(timeout=120):
                raise SystemExit("devices did not come online")
            results = []
            for v in versions:
                r = api.create_rollout(
                    name=f"{name} {v['version']}",
                    model_version_id=v["id"],
                    selector={"group": prefix},
                    start=True,
                    waves=[{"percent": 100}],
                    max_concurrent=devices,
                )
                started = time.monotonic()
                done = wait_rollout(api, r["id"])
                results.append((done, time.monotonic() - started))
        finally:
            fleet.stop()
            api.close()
    (first, _), (second, seconds) = results
    if second["state"] != "completed":
        raise SystemExit(f"v2 rollout ended {second['state']}: {second['state_reason']}")
    t = second["transfer"]
    return {
        "model": name,
        "variants": variants,
        "devices": devices,
        "raw_size": len(v2) + 292,  # the raw package: manifest + model
        "per_device": t["bytes_sent"] / devices,
        "encodings": t["encodings"],
        "v1_encodings": first["transfer"]["encodings"],
        "seconds": seconds,
    }


def build_time(v1: bytes, v2: bytes) -> tuple[float, int]:
    started = time.perf_counter()
    payload = delta.encode(v2, v1)
    return time.perf_counter() - started, len(payload)


def big_model_encode() -> str:
    """Time of one variant encode for a ~300 KB model (person_detect; its "v2" is synthetic: every
    50th byte of the second half changed, as a fine-tune touching a share of the weights might)."""
    path = PAIRS.parent / "person_detect.tflite"
    if not path.exists():
        return "- person_detect.tflite not found: 300 KB encode not measured"
    v1 = path.read_bytes()
    v2 = bytearray(v1)
    for i in range(len(v1) // 2, len(v1), 50):
        v2[i] ^= 0x01
    seconds, size = build_time(v1, bytes(v2))
    comp_started = time.perf_counter()
    compressed = len(delta.encode(bytes(v2)))
    comp_s = time.perf_counter() - comp_started
    return (
        f"- person_detect ({len(v1):,} B, synthetic v2): delta encode {seconds:.1f} s -> {size:,} B;"
        f" compressed encode {comp_s:.1f} s -> {compressed:,} B (why encoding runs on the builder thread)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    if not PAIRS.exists():
        raise SystemExit(f"model pairs not found at {PAIRS}")
    rows = []
    with DevBroker() as broker:
        for name, a, b in CASES:
            v1, v2 = (PAIRS / a).read_bytes(), (PAIRS / b).read_bytes()
            encode_s, delta_size = build_time(v1, v2)
            for variants in (False, True):
                row = run_case(broker, name, v1, v2, args.devices, variants)
                row["encode_s"], row["delta_size"] = encode_s, delta_size
                rows.append(row)
                print(row, file=sys.stderr)
    if args.markdown:
        print(
            "| model (v1 -> v2) | variants | devices | raw package | bytes sent per device |"
            " encodings sent | v1->v2 rollout wall time |"
        )
        print("|---|---|---:|---:|---:|---|---:|")
        for r in rows:
            enc = ", ".join(f"{k} {v}" for k, v in sorted(r["encodings"].items()))
            print(
                f"| {r['model']} | {'on' if r['variants'] else 'off'} | {r['devices']} | {r['raw_size']:,} |"
                f" {r['per_device']:,.0f} | {enc} | {r['seconds']:.1f} s |"
            )
        print()
        for name, _a, _b in CASES:
            r = next(x for x in rows if x["model"] == name)
            print(
                f"- {name}: one delta encode {r['encode_s'] * 1000:.0f} ms, delta stream {r['delta_size']} B"
            )
        print(big_model_encode())


if __name__ == "__main__":
    main()
