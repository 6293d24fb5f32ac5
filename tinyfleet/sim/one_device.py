"""One simulated device from a provisioning answer, with its flash kept in a directory across restarts:
what the conformance kit starts as the device under test (docs/CONFORMANCE.md).

    python -m tinyfleet.sim.one_device --provisioning ANSWER.json --state-dir DIR [--qemu]

The agent is the simulator's (tinyfleet/sim/agent.py) over the real C runtime: the host library by
default, the firmware under QEMU with --qemu. SIGTERM stops it cleanly and saves the flash (host
library: DIR/flash.bin; QEMU: DIR/qemu/flash.bin), so a restarted device resumes a download as a
rebooted board does."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from tinyfleet.signing.keys import TrustedKey
from tinyfleet.sim.fleet import DeviceSpec, FleetConfig, LocalFleet
from tinyfleet.sim.profiles import get_profile
from tinyfleet.sim.runtime_driver import HostTransport, RuntimeDriver


class _PersistentFleet(LocalFleet):
    """A fleet of one whose device boots from, and at the end saves, a flash image in `state_dir`."""

    def __init__(self, config: FleetConfig, state_dir: Path) -> None:
        super().__init__(config)
        self.state_dir = state_dir
        self.driver: RuntimeDriver | None = None

    def _driver(self, spec: DeviceSpec) -> RuntimeDriver:
        if spec.qemu:
            from tinyfleet.sim.qemu_transport import QemuTransport

            transport = QemuTransport(spec.profile, self.config.trusted_keys, workdir=self.state_dir / "qemu")
            self.driver = RuntimeDriver(spec.profile, transport=transport)
            return self.driver
        self.driver = RuntimeDriver(spec.profile, self.config.trusted_keys)
        image = self.state_dir / "flash.bin"
        if image.is_file() and isinstance(self.driver.transport, HostTransport):
            self.driver.transport.runtime.load_flash(image.read_bytes())
            self.driver.power_on_and_boot()
        return self.driver

    def stop_agents(self) -> None:
        """On the fleet's loop: every agent offline cleanly (presence false), the flash untouched after."""
        for agent in self.agents.values():
            agent.stop()

    def save_flash(self) -> None:
        """After the agent stopped: keep the flash for the next start."""
        driver = self.driver
        if driver is None:
            return
        transport: Any = driver.transport
        if isinstance(transport, HostTransport):
            data = self.call(transport.runtime.read_flash, timeout=120.0)
            tmp = self.state_dir / "flash.bin.tmp"
            tmp.write_bytes(data)
            os.replace(tmp, self.state_dir / "flash.bin")
        elif transport.device.running:
            self.call(transport.device.power_off, timeout=120.0)  # a loaded machine is slow


def _trusted(answer: dict[str, Any]) -> tuple[TrustedKey, ...]:
    return tuple(
        TrustedKey(bytes.fromhex(k["key_id"]), bytes.fromhex(k["public_key"])) for k in answer["trust_store"]
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Run one simulated device from its provisioning answer.")
    p.add_argument("--provisioning", required=True, type=Path, help="the answer of POST /api/devices (JSON)")
    p.add_argument("--state-dir", required=True, type=Path, help="its flash, kept across restarts")
    p.add_argument("--host", help="broker host (default: the answer's mqtt.host)")
    p.add_argument("--port", type=int, help="broker port (default: the answer's mqtt.port)")
    p.add_argument("--telemetry-period", type=float, default=2.0, help="seconds between telemetry reports")
    p.add_argument("--qemu", action="store_true", help="the firmware under QEMU instead of the host library")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        answer = json.loads(args.provisioning.read_text())
        mqtt_info = answer["mqtt"]
        device_id = answer["device"]["id"]
        profile = dataclasses.replace(
            get_profile("lan"),
            hardware_class=int(answer["device"]["hardware_class"]),
            telemetry_period_s=args.telemetry_period,
        )
        trusted = _trusted(answer)
        # Cert mode (TINYFLEET_DEVICE_AUTH=cert): the answer has a certificate and no password; the
        # device, host library or QEMU board alike, logs in over TLS with it (sim/device_tls.py).
        cert = answer.get("certificate") or {}
        if not isinstance(cert, dict):
            raise ValueError("'certificate' must be an object")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"error: cannot use {args.provisioning}: {exc}", file=sys.stderr)
        return 2
    args.state_dir.mkdir(parents=True, exist_ok=True)
    spec = DeviceSpec(
        device_id,
        profile,
        username=mqtt_info.get("username"),
        password=mqtt_info.get("password"),
        cert_pem=cert.get("certificate_pem"),
        key_pem=cert.get("private_key_pem"),
        ca_pem=cert.get("ca_pem"),
        qemu=args.qemu,
    )
    host = args.host or mqtt_info.get("host") or "127.0.0.1"
    port = int(args.port or mqtt_info.get("port") or 1883)
    fleet = _PersistentFleet(FleetConfig(host, port, trusted, (spec,)), args.state_dir)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    fleet.start()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        # Offline cleanly (presence false), then the flash is saved while nothing writes to it.
        try:
            fleet.call(fleet.stop_agents)
            fleet.save_flash()
        except Exception as exc:  # the flash may be lost (as in a power cut); still stop everything
            logging.getLogger(__name__).error("clean shutdown failed: %s", exc)
        finally:
            fleet.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
