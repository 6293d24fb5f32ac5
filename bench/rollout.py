"""Rollout benchmark: time from rollout start to every device confirmed, and bytes sent per device.

Everything is real and local: Mosquitto (per-device passwords and ACL), the control plane (SQLite, MQTT
gateway, rollout driver), and N simulated devices in worker processes, each driving its own instance of
the C runtime (signature check, flash writes, self-test, confirm). The package is the demo's v1 (TFLite
Micro hello_world, signed offline).

    .venv/bin/python bench/rollout.py --devices 200 1000 --markdown
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console

from tinyfleet.demo import embedded_stack
from tinyfleet.demo_models import MODEL_NAME, build_releases
from tinyfleet.signing.keys import generate_private_key, save_keypair
from tinyfleet.sim.cli import provision_fleet
from tinyfleet.sim.fleet import Fleet, FleetConfig
from tinyfleet.sim.profiles import FleetMix, get_profile


@dataclass
class Result:
    devices: int
    profile: str
    processes: int
    max_concurrent: int
    provision_s: float
    online_s: float
    rollout_s: float
    package_bytes: int
    server_bytes_per_device: float
    device_bytes_per_device: float
    confirmed: int
    power_cuts: int

    @property
    def devices_per_minute(self) -> float:
        return self.confirmed / self.rollout_s * 60 if self.rollout_s else 0.0


def run_one(
    devices: int, processes: int | None, max_concurrent: int | None, mix: FleetMix, quiet: Console
) -> Result:
    with tempfile.TemporaryDirectory(prefix="tinyfleet-bench-") as tmp:
        workdir = Path(tmp)
        key = generate_private_key()
        _, pub = save_keypair(workdir / "release", key)
        profile = get_profile("lan")
        release = build_releases(key, profile.hardware_class, with_selftest=True)[0]
        with embedded_stack(workdir, pub, quiet, tick_seconds=0.1) as env:
            api = env.api
            api.ensure_model(MODEL_NAME)
            version_id = int(api.upload_package(release.package)["model_version_id"])
            api.put_hardware_class(profile)
            t0 = time.monotonic()
            specs, provisioned = provision_fleet(api, devices, mix, "bench", "bench")
            provision_s = time.monotonic() - t0
            env.broker.reload()
            config = FleetConfig(env.broker.host, env.broker.port, provisioned[0].trusted_keys, tuple(specs))
            fleet = Fleet(config, processes=processes)
            t0 = time.monotonic()
            fleet.start()
            try:
                if not fleet.wait_online(timeout=300):
                    raise RuntimeError("the fleet did not come online")
                # The server must have seen every presence message before the rollout picks targets.
                while sum(d["online"] for d in api.devices(group="bench")) < devices:
                    time.sleep(0.2)
                online_s = time.monotonic() - t0
                before = api.gateway_stats()["events"].get("chunk_bytes", 0)
                device_before = fleet.snapshot().totals["chunk_bytes"]
                t0 = time.monotonic()
                rollout = api.create_rollout(
                    name="bench",
                    model_version_id=version_id,
                    selector={"group": "bench"},
                    max_concurrent=max_concurrent or devices,
                    start=True,
                )
                while True:
                    rollout = api.rollout(rollout["id"])
                    if rollout["state"] != "running":
                        break
                    time.sleep(0.1)
                rollout_s = time.monotonic() - t0
                confirmed = rollout["deploy"]["by_state"].get("confirmed", 0)
                sent = api.gateway_stats()["events"].get("chunk_bytes", 0) - before
                after = fleet.snapshot().totals
                received = after["chunk_bytes"] - device_before
                power_cuts = after["power_cuts"]
            finally:
                fleet.stop()
            return Result(
                devices,
                ",".join(f"{p.name}:{w:g}" for p, w in mix.weights),
                fleet.processes,
                max_concurrent or devices,
                provision_s,
                online_s,
                rollout_s,
                len(release.package),
                sent / devices,
                received / devices,
                confirmed,
                power_cuts,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--processes", type=int, default=0, help="fleet worker processes (0: one per core)")
    parser.add_argument(
        "--max-concurrent", type=int, default=0, help="rollout max_concurrent (0: all devices)"
    )
    parser.add_argument("--profile", default="lan", help="profile or mix, e.g. lan:0.8,flaky:0.2")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    quiet = Console(file=open(os.devnull, "w"))  # noqa: SIM115 - lives as long as the process
    mix = FleetMix.parse(args.profile)
    if any(p.hardware_class != get_profile("lan").hardware_class for p, _ in mix.weights):
        parser.error("the benchmark package is built for hardware class 1: use profiles of that class")
    results = [
        run_one(n, args.processes or None, args.max_concurrent or None, mix, quiet) for n in args.devices
    ]
    columns = [
        "devices", "profile", "fleet processes", "max concurrent", "confirmed", "start -> all confirmed (s)",
        "devices/min", "package bytes", "bytes sent per device (server)",
        "bytes received per device (devices)", "power cuts", "provisioning (s)", "fleet online (s)",
    ]  # fmt: skip
    print("| " + " | ".join(columns) + " |")
    print("|---:|---|" + "---:|" * (len(columns) - 2))
    for r in results:
        cells = [
            r.devices, r.profile, r.processes, r.max_concurrent, r.confirmed, f"{r.rollout_s:.1f}",
            f"{r.devices_per_minute:.0f}", r.package_bytes, f"{r.server_bytes_per_device:.0f}",
            f"{r.device_bytes_per_device:.0f}", r.power_cuts, f"{r.provision_s:.1f}", f"{r.online_s:.1f}",
        ]  # fmt: skip
        print("| " + " | ".join(str(c) for c in cells) + " |")
    if not args.markdown:
        print(f"machine: {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
