"""Many device agents: one asyncio loop per process drives hundreds of paho clients and C runtimes.

Why this shape: a paho client per device with its own network thread costs a thread per device; here
every agent's socket is registered on one event loop (paho's external-loop callbacks), and each agent's
runtime is a C object in the same process, so 1,000 devices cost 1,000 sockets and 1,000 runtimes, not
1,000 threads. Past one core, `Fleet` starts one worker process per core, each running a `LocalFleet`
over its share of the devices.

`LocalFleet` runs its loop in a background thread of the calling process, which is what tests use to
look inside devices (runtime state, bytes received); `Fleet` is what the CLI, the demo and the
benchmark use.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import gc
import logging
import math
import multiprocessing as mp
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from tinyfleet.signing.keys import TrustedKey
from tinyfleet.sim.agent import AgentConfig, AgentStats, DeviceAgent
from tinyfleet.sim.profiles import DeviceProfile
from tinyfleet.sim.runtime_driver import RuntimeDriver

log = logging.getLogger(__name__)

CONNECT_BATCH = 25  # agents connected per loop turn: a thousand SYNs at once only causes retries
GC_PERIOD_S = 60.0  # a managed worker's full collection (then freeze) period
MISC_SWEEP_MAX_S = 5  # longest interval between two keepalive checks of one agent
STATS_FIELDS = tuple(AgentStats().__dict__)


@dataclass(frozen=True)
class DeviceSpec:
    """Who a simulated device is and how it connects (credentials come from provisioning)."""

    device_id: str
    profile: DeviceProfile
    username: str | None = None
    password: str | None = None
    seed: int = 0
    # Certificate identity (PEM; sim/device_tls.py): TLS with the device's certificate instead of a password.
    cert_pem: str | None = None
    key_pem: str | None = None
    ca_pem: str | None = None
    # X25519 private key (base64) from provisioning: opens the content key of encrypted rollouts.
    encryption_key: str | None = None
    # Run the real firmware under QEMU (tinyfleet/sim/qemu_transport.py) instead of the host library: one
    # emulator process per device, so only a few.
    qemu: bool = False


@dataclass(frozen=True)
class FleetConfig:
    broker_host: str
    broker_port: int
    trusted_keys: tuple[TrustedKey, ...]
    devices: tuple[DeviceSpec, ...]
    keepalive: int = 30
    mqtt_protocol: str = "3.1.1"  # or "5" (PROTOCOL.md 4.6)
    # A broker cluster (issue 16): every node's (host, port); device k starts on node k mod n (round
    # robin) and moves to the next node when its own cannot be reached. Empty: broker_host/port only.
    brokers: tuple[tuple[str, int], ...] = ()
    # Where this config's devices sit in the whole fleet (offset, stride) when a Fleet slices it over
    # worker processes, so the round robin is the whole fleet's.
    spread: tuple[int, int] = (0, 1)
    subscribe_qos: int = 1  # 0 on a RabbitMQ 3.10 cluster (AgentConfig.subscribe_qos)


@dataclass
class FleetSnapshot:
    """Fleet-wide counters, summed over agents (and processes)."""

    devices: int = 0
    online: int = 0
    totals: dict[str, int] = field(default_factory=dict)

    def add(self, other: FleetSnapshot) -> None:
        self.devices += other.devices
        self.online += other.online
        for key, value in other.totals.items():
            self.totals[key] = self.totals.get(key, 0) + value


def expected_online(config: FleetConfig) -> int:
    """Devices that should come online: all but the dead ones."""
    return sum(not spec.profile.faults.dead for spec in config.devices)


def _each(calls: Iterable[Callable[[], None]]) -> None:
    for call in calls:
        call()


class LocalFleet:
    """Agents on one asyncio loop running in a background thread of this process."""

    def __init__(self, config: FleetConfig, manage_gc: bool = False) -> None:
        """manage_gc: this process is the fleet's own (a worker): tune the garbage collector for it."""
        self.config = config
        self.agents: dict[str, DeviceAgent] = {}
        self._manage_gc = manage_gc
        self._next_gc = time.monotonic() + GC_PERIOD_S  # not at start: the devices connect first
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name="tinyfleet-fleet", daemon=True)
        self._misc_task: asyncio.Task[None] | None = None

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def call(self, fn: Callable[[], Any], timeout: float = 30.0) -> Any:
        """Run fn on the fleet's loop and return its result (agents are only touched from there)."""
        done: Future[Any] = Future()

        def run() -> None:
            try:
                done.set_result(fn())
            except BaseException as exc:
                done.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return done.result(timeout)

    def start(self) -> LocalFleet:
        self._thread.start()
        try:
            # About a millisecond per device on an idle core; a busy machine gets plenty of slack.
            self.call(self._create_agents, timeout=max(120.0, len(self.config.devices) / 20))
        except BaseException:
            self.stop()  # close the devices made so far (a QEMU device is a process)
            raise
        return self

    def _brokers_of(self, position: int) -> tuple[tuple[str, int], tuple[tuple[str, int], ...]]:
        """(the device's first broker, the others in the order it tries them)."""
        nodes = self.config.brokers or ((self.config.broker_host, self.config.broker_port),)
        offset, stride = self.config.spread
        first = (offset + position * stride) % len(nodes)
        ordered = nodes[first:] + nodes[:first]
        return ordered[0], tuple(ordered[1:])

    def _create_agents(self) -> None:
        for position, spec in enumerate(self.config.devices):
            driver = self._driver(spec)
            (host, port), alternates = self._brokers_of(position)
            agent_config = AgentConfig(
                device_id=spec.device_id,
                broker_host=host,
                broker_port=port,
                alternates=alternates,
                mqtt_protocol=self.config.mqtt_protocol,
                subscribe_qos=self.config.subscribe_qos,
                username=spec.username,
                password=spec.password,
                keepalive=self.config.keepalive,
                seed=spec.seed,
                cert_pem=spec.cert_pem,
                key_pem=spec.key_pem,
                ca_pem=spec.ca_pem,
            )
            self.agents[spec.device_id] = DeviceAgent(agent_config, spec.profile, driver, self._loop)
        self._misc_task = self._loop.create_task(self._misc_forever())
        self._loop.create_task(self._connect_all(list(self.agents.values())))

    def _driver(self, spec: DeviceSpec) -> RuntimeDriver:
        key = base64.b64decode(spec.encryption_key) if spec.encryption_key else None
        if not spec.qemu:
            return RuntimeDriver(spec.profile, self.config.trusted_keys, encryption_key=key)
        from tinyfleet.sim.qemu_transport import QemuTransport  # only fleets with QEMU devices need it

        transport = QemuTransport(spec.profile, self.config.trusted_keys, encryption_key=key)
        return RuntimeDriver(spec.profile, transport=transport)

    async def _connect_all(self, agents: list[DeviceAgent]) -> None:
        for i in range(0, len(agents), CONNECT_BATCH):
            for agent in agents[i : i + CONNECT_BATCH]:
                agent.start()
            await asyncio.sleep(0.01)

    async def _misc_forever(self) -> None:
        # Each agent's keepalive is checked once every `sweep` seconds of wall time, a share of the agents
        # per turn in proportion to the time since the last turn (a loop lagging under load checks more
        # per turn, not fewer per second). paho only needs the check well within the keepalive (a PINGREQ
        # at most `sweep` s late, against the broker's 1.5x keepalive grace); a check of every agent every
        # second was 10,000 calls a second at 10,000 devices.
        sweep = max(1, min(MISC_SWEEP_MAX_S, self.config.keepalive // 10))
        cursor = 0
        last = time.monotonic() - sweep  # the first turn checks every agent
        while True:
            agents = list(self.agents.values())
            now = time.monotonic()
            count = min(len(agents), math.ceil(len(agents) * (now - last) / sweep))
            last = now
            for i in range(count):
                agent = agents[(cursor + i) % len(agents)]
                try:
                    agent.misc()
                except Exception:
                    log.exception("%s: keepalive failed", agent.device_id)
            cursor = (cursor + count) % max(1, len(agents))
            if self._manage_gc and now >= self._next_gc:
                self._collect_and_freeze()
                self._next_gc = now + GC_PERIOD_S
            await asyncio.sleep(1.0)

    @staticmethod
    def _collect_and_freeze() -> None:
        """What survived a full collection lives as long as the worker (agents, clients, connections):
        frozen, later collections skip it. Automatic full collections walked every device's objects,
        13% of a worker's CPU at 10,000 devices; reference counting still frees frozen objects."""
        gc.collect()
        gc.freeze()

    def snapshot(self) -> FleetSnapshot:
        def collect() -> FleetSnapshot:
            snap = FleetSnapshot(devices=len(self.agents))
            snap.totals = dict.fromkeys(STATS_FIELDS, 0)
            for agent in self.agents.values():
                snap.online += int(agent.connected)
                for key in STATS_FIELDS:
                    snap.totals[key] += getattr(agent.stats, key)
            return snap

        result: FleetSnapshot = self.call(collect)
        return result

    def wait_online(self, count: int | None = None, timeout: float = 60.0) -> bool:
        """Wait until count devices are connected (default: every device that is not dead)."""
        want = expected_online(self.config) if count is None else count
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.snapshot().online >= want:
                return True
            time.sleep(0.1)
        return False

    def set_offline(self, device_ids: Iterable[str]) -> None:
        """Take devices away cleanly (as if switched off) until bring_online()."""
        ids = list(device_ids)
        self.call(lambda: _each(self.agents[i].stop for i in ids))

    def bring_online(self, device_ids: Iterable[str]) -> None:
        ids = list(device_ids)
        self.call(lambda: _each(self.agents[i].start for i in ids))

    def stop(self) -> None:
        if not self._thread.is_alive():
            return

        def shutdown() -> None:
            for agent in self.agents.values():
                agent.stop()
            if self._misc_task is not None:
                self._misc_task.cancel()

        with contextlib.suppress(Exception):
            self.call(shutdown)
        time.sleep(0.2)  # let the DISCONNECT packets leave
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        for agent in self.agents.values():
            agent.driver.close()
        with contextlib.suppress(RuntimeError):
            self._loop.close()

    def __enter__(self) -> LocalFleet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ----- multiprocess fleet ----------------------------------------------------------------------------------


def _worker_main(config: FleetConfig, commands: mp.Queue[Any], reports: mp.Queue[Any]) -> None:
    """One worker process: run a LocalFleet and answer snapshot/stop commands from the parent."""
    # Ctrl-C reaches the whole process group; the parent decides when workers stop (and stops them).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING)
    # Automatic full collections off: the fleet runs one a minute itself, then freezes what survived.
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, 1_000_000)
    fleet = LocalFleet(config, manage_gc=True)
    try:
        fleet.start()
        gc.freeze()  # the agents, clients and runtimes just made (a freeze is cheap, a collection is not)
        reports.put(("started", None))
        while True:
            try:
                command, arg = commands.get(timeout=1.0)
            except queue.Empty:
                continue
            if command == "stop":
                break
            if command == "snapshot":
                reports.put(("snapshot", fleet.snapshot()))
            elif command == "offline":
                fleet.set_offline([i for i in arg if i in fleet.agents])
            elif command == "online":
                fleet.bring_online([i for i in arg if i in fleet.agents])
    except Exception as exc:  # the parent shows the reason instead of waiting forever
        reports.put(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        fleet.stop()
        reports.put(("stopped", None))


class FleetError(RuntimeError):
    """A fleet worker failed to start or died."""


class Fleet:
    """Devices spread over `processes` worker processes (default: one per core, at most one per 50)."""

    def __init__(self, config: FleetConfig, processes: int | None = None) -> None:
        cores = mp.cpu_count() or 1
        wanted = processes if processes else min(cores, max(1, len(config.devices) // 50))
        self.processes = max(1, min(wanted, max(1, len(config.devices))))
        self.config = config
        self._ctx = mp.get_context("spawn")  # fresh interpreters: no inherited threads or sockets
        self._workers: list[tuple[Any, Any, Any]] = []

    def _slices(self) -> list[Sequence[DeviceSpec]]:
        devices = self.config.devices
        return [devices[i :: self.processes] for i in range(self.processes)]

    def start(self, timeout: float = 120.0) -> Fleet:
        for index, part in enumerate(self._slices()):
            sub = dataclasses.replace(self.config, devices=tuple(part), spread=(index, self.processes))
            commands = self._ctx.Queue()
            reports = self._ctx.Queue()
            proc = self._ctx.Process(target=_worker_main, args=(sub, commands, reports), daemon=True)
            proc.start()
            self._workers.append((proc, commands, reports))
        for proc, _, reports in self._workers:
            kind, detail = self._next_report(proc, reports, timeout)
            if kind != "started":
                self.stop()
                raise FleetError(f"fleet worker failed to start: {detail}")
        return self

    @staticmethod
    def _next_report(proc: Any, reports: Any, timeout: float) -> tuple[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                item: tuple[str, Any] = reports.get(timeout=0.5)
                return item
            except queue.Empty:
                if not proc.is_alive():
                    return ("error", f"worker exited with code {proc.exitcode}")
        return ("error", "timed out")

    def pids(self) -> list[int]:
        """The worker processes' ids (benchmarks read their CPU time and memory)."""
        return [proc.pid for proc, _, _ in self._workers if proc.pid is not None]

    def snapshot(self, timeout: float = 10.0) -> FleetSnapshot:
        total = FleetSnapshot()
        for _, commands, _ in self._workers:
            commands.put(("snapshot", None))
        for proc, _, reports in self._workers:
            kind, detail = self._next_report(proc, reports, timeout)
            if kind == "snapshot":
                total.add(detail)
            elif kind == "error":
                raise FleetError(f"fleet worker failed: {detail}")
        return total

    def wait_online(self, count: int | None = None, timeout: float = 120.0) -> bool:
        want = expected_online(self.config) if count is None else count
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.snapshot().online >= want:
                return True
            time.sleep(0.25)
        return False

    def set_offline(self, device_ids: Iterable[str]) -> None:
        ids = list(device_ids)
        for _, commands, _ in self._workers:
            commands.put(("offline", ids))

    def bring_online(self, device_ids: Iterable[str]) -> None:
        ids = list(device_ids)
        for _, commands, _ in self._workers:
            commands.put(("online", ids))

    def stop(self, timeout: float = 15.0) -> None:
        for proc, commands, _ in self._workers:
            if proc.is_alive():
                commands.put(("stop", None))
        for proc, _, _ in self._workers:
            proc.join(timeout)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
        for _, commands, reports in self._workers:
            commands.close()
            reports.close()
        self._workers.clear()

    def __enter__(self) -> Fleet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
