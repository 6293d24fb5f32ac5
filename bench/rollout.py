"""Rollout benchmark: time from rollout start to every device confirmed, and what it cost.

Everything is real and local: Mosquitto (per-device passwords and ACL), the control plane (SQLite, MQTT
gateway, rollout driver), and N simulated devices in worker processes, each driving its own instance of
the C runtime (signature check, flash writes, self-test, confirm). The package is the demo's v1 (TFLite
Micro hello_world, signed offline). Each row is printed as soon as its run ends, with the load average,
the CPU seconds each process used during the rollout, bytes per device and memory per simulated device.

    .venv/bin/python bench/rollout.py --sizes 1000 3000 10000
    .venv/bin/python bench/rollout.py --sizes 10000 --flaky 0.2
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console
from sqlmodel import Session

from tinyfleet.demo import embedded_stack
from tinyfleet.demo_models import MODEL_NAME, build_releases
from tinyfleet.server.models import Rollout
from tinyfleet.signing.keys import generate_private_key, save_keypair
from tinyfleet.sim.cli import provision_fleet
from tinyfleet.sim.fleet import Fleet, FleetConfig
from tinyfleet.sim.profiles import FleetMix, get_profile
from tinyfleet.sim.server_api import ServerApi, ServerApiError

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, tid: int | None = None) -> float:
    """User + system CPU of a process, or of one of its threads (from /proc, so no extra dependency)."""
    path = f"/proc/{pid}/task/{tid}/stat" if tid is not None else f"/proc/{pid}/stat"
    try:
        fields = Path(path).read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14 and 15 of stat)


# The server's threads by the start of their names: their CPU is reported apart (the server is this
# process, so its total holds the benchmark's own light polling as well, counted under "other").
THREAD_KINDS = {
    "tinyfleet-gateway": "gateway",
    "paho-mqtt-client": "paho",
    "tinyfleet-rollouts": "driver",
    "tinyfleet-telemetry": "telemetry",
}


def thread_cpu() -> dict[str, float]:
    """CPU seconds of this process's threads, by kind (THREAD_KINDS; the rest is "other")."""
    out = {kind: 0.0 for kind in (*THREAD_KINDS.values(), "other")}
    pid = os.getpid()
    for thread in threading.enumerate():
        if thread.native_id is None:
            continue
        kind = next((k for prefix, k in THREAD_KINDS.items() if thread.name.startswith(prefix)), "other")
        out[kind] += cpu_seconds(pid, thread.native_id)
    return out


def rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def load_average() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


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
    stuck: int
    power_cuts: int
    load_before: str
    load_after: str
    cpu: dict[str, float] = field(default_factory=dict)  # process -> CPU seconds during the rollout
    rss_per_device: float = 0.0
    chunk_size: int = 0
    messages_per_device: float = 0.0  # device -> server messages the gateway received, telemetry included
    batch_mean: float = 0.0  # messages per gateway transaction (telemetry goes apart)
    by_kind: dict[str, float] = field(default_factory=dict)  # device messages per device, by topic kind
    retries_per_device: float = 0.0  # chunk requests the devices re-sent after their timeout
    duplicates_per_device: float = 0.0  # chunks the devices received again (answers to a retry)
    threads: dict[str, float] = field(default_factory=dict)  # server thread kind -> CPU s in the rollout

    @property
    def batched_messages(self) -> float:
        """Device messages the gateway's worker handled (all but telemetry)."""
        return self.devices * (self.messages_per_device - self.by_kind.get("telemetry", 0.0))

    @property
    def devices_per_minute(self) -> float:
        return self.confirmed / self.rollout_s * 60 if self.rollout_s else 0.0


def _online(api: ServerApi) -> int:
    """Devices the server sees online; -1 while it answers 503 (SQLite busy under a heavy load)."""
    try:
        return sum(d["online"] for d in api.devices(group="bench"))
    except ServerApiError:
        return -1


def _pids(broker_pid: int | None, fleet: Fleet) -> dict[str, list[int]]:
    return {
        "server": [os.getpid()],
        "broker": [broker_pid] if broker_pid else [],
        "fleet": fleet.pids(),
    }


def _cpu(pids: dict[str, list[int]]) -> dict[str, float]:
    return {name: sum(cpu_seconds(p) for p in group) for name, group in pids.items()}


Spies = list[subprocess.Popen[bytes]]


def start_profiles(pids: dict[str, list[int]], out: Path | None, devices: int) -> Spies:
    """py-spy sampling each process during the rollout (--py-spy DIR): collapsed stacks, one file each."""
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if out is None or spy is None:
        return []
    out.mkdir(parents=True, exist_ok=True)
    procs = []
    for name, group in pids.items():
        if name == "broker":
            continue  # C, not Python
        for i, pid in enumerate(group):
            path = out / f"{devices}-{name}{i}.txt"
            cmd = [spy, "record", "--pid", str(pid), "-f", "raw", "-r", "50", "--nonblocking"]
            cmd += ["-o", str(path)]
            procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return procs


def stop_profiles(procs: Spies) -> None:
    for proc in procs:
        proc.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def run_one(
    devices: int,
    processes: int | None,
    max_concurrent: int | None,
    mix: FleetMix,
    quiet: Console,
    timeout: float,
    profile_dir: Path | None = None,
    chunk_size: int = 1024,
) -> Result:
    with tempfile.TemporaryDirectory(prefix="tinyfleet-bench-") as tmp:
        workdir = Path(tmp)
        key = generate_private_key()
        _, pub = save_keypair(workdir / "release", key)
        profile = get_profile("lan")
        release = build_releases(key, profile.hardware_class, with_selftest=True)[0]
        with embedded_stack(workdir, pub, quiet, tick_seconds=0.1) as env:
            # Starting a rollout of 10,000 devices is one request that creates 10,000 actions.
            api = ServerApi(env.server_url, env.server.token, timeout=600)
            api.ensure_model(MODEL_NAME)
            version_id = int(api.upload_package(release.package)["model_version_id"])
            api.put_hardware_class(profile, chunk_size=chunk_size)
            t0 = time.monotonic()
            specs, provisioned = provision_fleet(api, devices, mix, "bench", "bench")
            provision_s = time.monotonic() - t0
            env.broker.reload()
            config = FleetConfig(env.broker.host, env.broker.port, provisioned[0].trusted_keys, tuple(specs))
            fleet = Fleet(config, processes=processes)
            t0 = time.monotonic()
            fleet.start(timeout=600)
            try:
                expected = sum(not s.profile.faults.dead for s in specs)
                # Flaky devices drop their connection now and then: most of them online is enough.
                calm = all(p.faults.churn_per_second == 0 for p, _ in mix.weights)
                want = expected if calm else int(0.9 * expected)
                if not fleet.wait_online(want, timeout=600):
                    raise RuntimeError("the fleet did not come online")
                # The server must have seen every presence message before the rollout picks targets.
                deadline = time.monotonic() + 300
                while (seen := _online(api)) < want and time.monotonic() < deadline:
                    time.sleep(2.0)  # each poll lists every device: not too often
                if seen < want:
                    print(f"server sees {seen} of {want} devices online; rolling out anyway", file=sys.stderr)
                online_s = time.monotonic() - t0
                pids = _pids(env.broker.pid, fleet)
                stats0 = api.gateway_stats()
                before = stats0["events"].get("chunk_bytes", 0)
                device_before = fleet.snapshot(timeout=120).totals["chunk_bytes"]
                load_before = load_average()
                spies = start_profiles(pids, profile_dir, devices)
                cpu0, threads0 = _cpu(pids), thread_cpu()
                t0 = time.monotonic()
                rollout = api.create_rollout(
                    name="bench",
                    model_version_id=version_id,
                    selector={"group": "bench"},
                    max_concurrent=max_concurrent or devices,
                    start=True,
                )
                # The rollout's row is read directly (the API's GET counts every action: at 10,000
                # devices the bench would be the load); the time is the server's, start to completion.
                while time.monotonic() - t0 < timeout:
                    time.sleep(0.5)
                    with Session(env.server.ctx.db) as session:
                        row = session.get(Rollout, rollout["id"])
                        assert row is not None
                        state, started, finished = row.state, row.started_at, row.finished_at
                    if state != "running":
                        break
                rollout_s = time.monotonic() - t0
                if finished and started:
                    rollout_s = finished - started
                cpu1, threads1 = _cpu(pids), thread_cpu()
                stop_profiles(spies)
                rollout = api.rollout(rollout["id"])
                load_after = load_average()
                rss = sum(rss_bytes(p) for p in pids["fleet"])
                by_state = rollout["deploy"]["by_state"]
                confirmed = by_state.get("confirmed", 0)
                stuck = sum(n for s, n in by_state.items() if s not in ("confirmed", "failed", "timed_out"))
                stats1 = api.gateway_stats()
                sent = stats1["events"].get("chunk_bytes", 0) - before
                received_msgs = sum(stats1["received"].values()) - sum(stats0["received"].values())
                telemetry = stats1["received"].get("telemetry", 0) - stats0["received"].get("telemetry", 0)
                kinds0 = stats0["received"]
                by_kind = {k: (n - kinds0.get(k, 0)) / devices for k, n in stats1["received"].items()}
                batched = received_msgs - telemetry
                batches = stats1["events"].get("message_batches", 0) - stats0["events"].get(
                    "message_batches", 0
                )
                after = fleet.snapshot(timeout=120).totals
                received = after["chunk_bytes"] - device_before
                power_cuts = after["power_cuts"]
                retries, duplicates = after["chunk_retries"], after["chunk_duplicates"]  # none before
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
                stuck,
                power_cuts,
                load_before,
                load_after,
                {k: cpu1[k] - cpu0[k] for k in cpu0},
                rss / devices,
                chunk_size,
                received_msgs / devices,
                batched / max(1, batches),
                by_kind,
                retries / devices,
                duplicates / devices,
                {k: threads1[k] - threads0.get(k, 0.0) for k in threads1},
            )


COLUMNS = [
    "devices", "profile", "fleet processes", "max concurrent", "confirmed", "not finished",
    "start -> all confirmed (s)", "devices/min", "package bytes", "bytes sent per device (server)",
    "bytes received per device (devices)", "power cuts", "CPU s server", "CPU s broker", "CPU s fleet",
    "fleet RSS per device (KiB)", "load avg before", "load avg after", "provisioning (s)",
    "fleet online (s)", "chunk size", "device messages per device", "messages per gateway batch",
    "device messages per device by kind", "chunk retries per device", "duplicate chunks per device",
    "server CPU s by thread", "gateway worker CPU ms per device message (telemetry apart)",
]  # fmt: skip


def row(r: Result) -> str:
    cells = [
        r.devices, r.profile, r.processes, r.max_concurrent, r.confirmed, r.stuck, f"{r.rollout_s:.1f}",
        f"{r.devices_per_minute:.0f}", r.package_bytes, f"{r.server_bytes_per_device:.0f}",
        f"{r.device_bytes_per_device:.0f}", r.power_cuts, f"{r.cpu['server']:.1f}",
        f"{r.cpu['broker']:.1f}", f"{r.cpu['fleet']:.1f}", f"{r.rss_per_device / 1024:.0f}",
        r.load_before, r.load_after, f"{r.provision_s:.1f}", f"{r.online_s:.1f}", r.chunk_size,
        f"{r.messages_per_device:.1f}", f"{r.batch_mean:.1f}",
        ", ".join(f"{kind} {n:.2f}" for kind, n in sorted(r.by_kind.items()) if n),
        f"{r.retries_per_device:.3f}", f"{r.duplicates_per_device:.3f}",
        ", ".join(f"{kind} {cpu:.1f}" for kind, cpu in r.threads.items()),
        f"{1000 * r.threads.get('gateway', 0.0) / max(1.0, r.batched_messages):.3f}",
    ]  # fmt: skip
    return "| " + " | ".join(str(c) for c in cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", "--devices", type=int, nargs="+", default=[1000, 3000, 10000])
    parser.add_argument("--processes", type=int, default=0, help="fleet worker processes (0: default)")
    parser.add_argument(
        "--max-concurrent", type=int, default=0, help="rollout max_concurrent (0: all devices)"
    )
    parser.add_argument("--profile", default="lan", help="profile or mix, e.g. lan:0.8,flaky:0.2")
    parser.add_argument("--flaky", type=float, default=0.0, help="share of flaky devices, e.g. 0.2")
    parser.add_argument("--timeout", type=float, default=900.0, help="give up on a rollout after this")
    parser.add_argument("--markdown", action="store_true", help="table rows only")
    parser.add_argument(
        "--chunk-size", type=int, default=8192, help="the hardware class's chunk size (LAN: 8 KiB)"
    )
    parser.add_argument("--py-spy", type=Path, default=None, help="sample each process with py-spy into DIR")
    args = parser.parse_args()
    # `timeout`/`kill` end the run like Ctrl-C: the fleet's workers and the broker are stopped, not orphaned.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    quiet = Console(file=open(os.devnull, "w"))  # noqa: SIM115 - lives as long as the process
    text = args.profile
    if args.flaky:
        if not 0 < args.flaky < 1:
            parser.error("--flaky is a share between 0 and 1")
        text = f"lan:{1 - args.flaky:g},flaky:{args.flaky:g}"
    mix = FleetMix.parse(text)
    if any(p.hardware_class != get_profile("lan").hardware_class for p, _ in mix.weights):
        parser.error("the benchmark package is built for hardware class 1: use profiles of that class")
    if not args.markdown:
        print(f"machine: {os.cpu_count()} cores, load average {load_average()}", flush=True)
    print("| " + " | ".join(COLUMNS) + " |")
    left = {"profile", "load avg before", "load avg after"}
    print("|" + "".join("---|" if c in left else "---:|" for c in COLUMNS), flush=True)
    for n in args.sizes:
        r = run_one(
            n,
            args.processes or None,
            args.max_concurrent or None,
            mix,
            quiet,
            args.timeout,
            profile_dir=args.py_spy,
            chunk_size=args.chunk_size,
        )
        print(row(r), flush=True)


if __name__ == "__main__":
    main()
