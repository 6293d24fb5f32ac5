"""The Cortex-M4 firmware under QEMU (`mps2-an386`) as a device a test can talk to and power-cycle.

One `QemuDevice` is one emulated board. Its UART0 is a unix socket on which the harness speaks the same
frames as the host library (`tinyfleet/device/frames.py`); its QMP socket lets the harness freeze the CPU and
save memory. The emulated NOR flash lives in the board's PSRAM (0x21000000, see
`agent_firmware/ports/mps2-an386/memory_map.h`) and survives power cycles through a file:

* boot: `-device loader` copies `flash.bin` (first boot: all 0xFF) and `provision.bin` (trusted keys and
  device config, read-only for the firmware) into PSRAM before the CPU leaves reset;
* power off: QMP `stop` freezes the CPU between two instructions, `pmemsave` writes the flash region back
  to `flash.bin`, then QEMU is killed with SIGKILL (no clean shutdown, no guest code runs again).

A *power cut* is exactly that sequence at a moment the harness does not synchronise with the firmware
(`cut_power()`, after a delay), or, deterministically, just before the n-th flash operation
(`cut_at_flash_op()`, breakpoints through QEMU's gdbstub on the port's flash driver). The flash keeps
every byte stored before the freeze, so a cut in the middle of a program or erase loop leaves a partly
written region, as on NOR. What a RAM-backed flash cannot show is a single
byte left half-programmed or an erase leaving random bits: the host port's power-cut injection
(`simulator.runtime.CutMode`) covers those. docs/ARCHITECTURE.md, "QEMU port", has the details.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from tinyfleet.device import frames
from tinyfleet.signing.manifest import MANIFEST_SIZE

REPO_ROOT = Path(__file__).resolve().parents[2]
FIRMWARE_DIR = REPO_ROOT / "agent_firmware"
FIRMWARE_ELF = FIRMWARE_DIR / "build" / "mps2-an386" / "firmware.elf"

# agent_firmware/ports/mps2-an386/memory_map.h
FLASH_BASE = 0x21000000
FLASH_REGION_SIZE = 8 * 1024 * 1024
FLASH_SECTOR = 4096
DEFAULT_SLOT_SIZE = 512 * 1024
PROVISION_BASE = 0x21800000
PROVISION_SIZE = 4096

# agent_firmware/ports/mps2-an386/provision.h
PROVISION_MAGIC = b"TFPV"
PROVISION_FORMAT = 1
PROVISION_FORMAT_KEYED = 2  # with flags: the device's X25519 key (PROTOCOL 6.4), require_encryption
PROVISION_FLAG_ENCRYPTION_KEY = 1
PROVISION_FLAG_REQUIRE_ENCRYPTION = 2
PROVISION_MAX_KEYS = 8

QEMU = "qemu-system-arm"
ARM_GCC = "arm-none-eabi-gcc"
MACHINE = "mps2-an386"


class QemuError(RuntimeError):
    """The emulator could not be started, stopped or talked to."""


class PowerCut(QemuError):
    """The power was cut (at an armed flash operation) while a request was in flight: no answer."""


def firmware_symbol(elf: Path, name: str) -> int:
    """Address of a symbol (static ones included) in the firmware ELF, from arm-none-eabi-nm."""
    out = subprocess.run(["arm-none-eabi-nm", str(elf)], capture_output=True, text=True, check=False)
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == name:
            return int(parts[0], 16) & ~1  # Thumb bit off: a breakpoint wants the instruction address
    raise QemuError(f"symbol {name} not found in {elf}")


# The port's flash driver entry points (ram_flash.c): a breakpoint on them sees every flash operation.
FLASH_OP_SYMBOLS = ("prv_ram_flash_program", "prv_ram_flash_erase")


class _GdbStub:
    """The few GDB remote-protocol packets the harness needs from QEMU's gdbstub: stop, breakpoints,
    continue, and stop notifications."""

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        self.sock = sock
        self.timeout = timeout
        self._buf = bytearray()

    def _send(self, command: str) -> None:
        payload = command.encode()
        self.sock.sendall(b"$" + payload + b"#%02x" % (sum(payload) & 0xFF))

    def _packet(self, timeout: float | None) -> bytes | None:
        """The next packet's body (acknowledged), or None if none arrived within timeout."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            start = self._buf.find(b"$")
            end = self._buf.find(b"#", start) if start >= 0 else -1
            if end >= 0 and len(self._buf) >= end + 3:
                body = bytes(self._buf[start + 1 : end])
                del self._buf[: end + 3]
                self.sock.sendall(b"+")
                return body
            left = deadline - time.monotonic()
            self.sock.settimeout(max(left, 0.0))  # 0: one non-blocking look
            try:
                data = self.sock.recv(4096)
            except (TimeoutError, BlockingIOError):
                if left <= 0:
                    return None
                continue
            if not data:
                raise QemuError("gdbstub connection closed")
            self._buf += data

    def command(self, command: str) -> bytes:
        self._send(command)
        reply = self._packet(None)
        if reply is None:
            raise QemuError(f"gdbstub did not answer {command!r}")
        return reply

    def halt(self) -> None:
        self.sock.sendall(b"\x03")
        if self._packet(None) is None:
            raise QemuError("gdbstub did not stop the CPU")

    def set_breakpoints(self, addresses: Sequence[int], insert: bool = True) -> None:
        for address in addresses:
            reply = self.command(f"{'Z0' if insert else 'z0'},{address:x},2")
            if reply != b"OK":
                raise QemuError(f"gdbstub refused breakpoint {address:#x}: {reply!r}")

    def resume(self) -> None:
        self._send("c")  # the answer is the next stop packet

    def resume_from(self, breakpoints: Sequence[int]) -> None:
        """Continue from a breakpoint: lift them, step one instruction, put them back, continue
        (QEMU would stop again at once on the breakpoint under the PC)."""
        self.set_breakpoints(breakpoints, insert=False)
        self._send("s")
        if self._packet(None) is None:
            raise QemuError("gdbstub did not single-step")
        self.set_breakpoints(breakpoints)
        self.resume()

    def poll_stop(self) -> bytes | None:
        return self._packet(0.0)


def missing_tools() -> str | None:
    """Why the QEMU port cannot run here, or None when qemu-system-arm and arm-none-eabi-gcc exist."""
    for tool in (QEMU, ARM_GCC):
        if shutil.which(tool) is None:
            return f"{tool} not found on PATH"
    return None


FIRMWARE_TARGETS = {"all": "firmware.elf", "engine": "firmware-engine.elf", "bench": "bench.elf"}


def firmware_dir(encryption: bool = False) -> Path:
    """Where the port's Makefile puts its ELFs: `make ENCRYPTION=1` (decryption built in) has its own."""
    return FIRMWARE_ELF.parent.with_name(MACHINE + "-enc") if encryption else FIRMWARE_ELF.parent


def build_firmware(target: str = "all", encryption: bool = False) -> Path:
    """Run the port's Makefile (incremental) for target (see FIRMWARE_TARGETS) and return its ELF;
    `encryption`: the variant that installs encrypted packages (`make ENCRYPTION=1`)."""
    if target not in FIRMWARE_TARGETS:
        raise ValueError(f"unknown firmware target {target!r}; one of {sorted(FIRMWARE_TARGETS)}")
    port = FIRMWARE_DIR / "ports" / MACHINE
    command = ["make", "-s", "-C", str(port), target] + (["ENCRYPTION=1"] if encryption else [])
    proc = subprocess.run(command, capture_output=True, text=True, check=False, timeout=300)
    if proc.returncode != 0:
        raise QemuError(f"firmware build failed:\n{proc.stdout}\n{proc.stderr}")
    return firmware_dir(encryption) / FIRMWARE_TARGETS[target]


@dataclass(frozen=True)
class Provision:
    """The factory record the firmware reads at boot: trusted keys and device config (provision.h)."""

    public_keys: Sequence[bytes]
    hardware_class: int = 1
    ram_budget: int = 64 * 1024
    slot_size: int = DEFAULT_SLOT_SIZE
    max_trial_boots: int = 1
    # The device's X25519 private key (PROTOCOL 6.4) and whether it refuses clear packages: a record
    # with either is format 2. Only a firmware built with ENCRYPTION=1 uses them.
    encryption_key: bytes | None = None
    require_encryption: bool = False

    @property
    def flash_size(self) -> int:
        """Bytes of flash the runtime uses: 2 state sectors + 2 slots (TFA_FLASH_SIZE_FOR)."""
        return 2 * FLASH_SECTOR + 2 * self.slot_size

    def slot_address(self, slot: int) -> int:
        """Flash offset of slot 0 or 1 (tfa_slot_address)."""
        return 2 * FLASH_SECTOR + slot * self.slot_size

    def encode(self) -> bytes:
        if not 1 <= len(self.public_keys) <= PROVISION_MAX_KEYS:
            raise ValueError(
                f"a device holds 1..{PROVISION_MAX_KEYS} trusted keys, got {len(self.public_keys)}"
            )
        for name in ("hardware_class", "ram_budget"):
            if not 0 <= getattr(self, name) <= 0xFFFFFFFF:
                raise ValueError(f"{name} {getattr(self, name)} is not a u32")
        if not 0 <= self.max_trial_boots <= 0xFF:
            raise ValueError(f"max_trial_boots {self.max_trial_boots} is not a u8")
        body = bytearray(PROVISION_MAGIC)
        if self.slot_size <= 0 or self.slot_size % FLASH_SECTOR or self.flash_size > FLASH_REGION_SIZE:
            raise ValueError(
                f"slot size {self.slot_size} is not a positive multiple of {FLASH_SECTOR} "
                f"that fits the {FLASH_REGION_SIZE}-byte flash region"
            )
        if self.encryption_key is not None and len(self.encryption_key) != 32:
            raise ValueError("an X25519 private key is 32 bytes")
        flags = (PROVISION_FLAG_ENCRYPTION_KEY if self.encryption_key is not None else 0) | (
            PROVISION_FLAG_REQUIRE_ENCRYPTION if self.require_encryption else 0
        )
        body += struct.pack(
            "<HHIIIBB2x",
            PROVISION_FORMAT_KEYED if flags else PROVISION_FORMAT,
            len(self.public_keys),
            self.hardware_class,
            self.ram_budget,
            self.slot_size,
            self.max_trial_boots,
            flags,
        )
        for key in self.public_keys:
            if len(key) != 32:
                raise ValueError("an Ed25519 public key is 32 bytes")
            body += _key_id(key) + key
        body += self.encryption_key or b""
        body += struct.pack("<I", zlib.crc32(body))
        return bytes(body).ljust(PROVISION_SIZE, b"\xff")


def _key_id(public_key: bytes) -> bytes:
    return hashlib.sha256(public_key).digest()[:8]


def _die_with_parent() -> None:
    """In the QEMU child before exec: be killed when the harness dies (Linux), so that an interrupted
    test run leaves no emulator behind."""
    try:
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL))
    except (OSError, AttributeError):
        pass


@dataclass
class _Sockets:
    serial: socket.socket
    qmp: socket.socket
    gdb: _GdbStub | None = None
    qmp_buffer: bytearray = field(default_factory=bytearray)


class QemuDevice:
    """An mps2-an386 board running `firmware` with its flash persisted in `workdir/flash.bin`."""

    def __init__(
        self,
        provision: Provision,
        workdir: Path | None = None,
        firmware: Path = FIRMWARE_ELF,
        *,
        extra_args: Sequence[str] = (),
        timeout: float = 30.0,
        gdb: bool = False,
    ) -> None:
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="tf-qemu-")) if workdir is None else Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.firmware = Path(firmware)
        self.provision = provision
        self.extra_args = list(extra_args)
        self.timeout = timeout
        self.flash_path = self.workdir / "flash.bin"
        self.provision_path = self.workdir / "provision.bin"
        self.log_path = self.workdir / "qemu.log"
        self.boots = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._sockets: _Sockets | None = None
        self._decoder = frames.FrameDecoder()
        self._pending: list[frames.FrameEvent] = []
        self._next_id = 1
        self.gdb = gdb  # expose QEMU's gdbstub to the harness (for cut_at_flash_op)
        self.flash_ops = 0  # flash operations seen since cut_at_flash_op() armed the breakpoints
        self._cut_at: int | None = None
        self._breakpoints: list[int] = []

    # ----------------------------------------------------------------- lifecycle

    def __enter__(self) -> QemuDevice:
        self.power_on()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def power_on(self, wait_ready: bool = True) -> None:
        """Start QEMU with the saved flash (a fresh all-0xFF flash on the very first boot). With
        wait_ready, return only once the firmware answered HELLO, i.e. its runtime boot (state load,
        trial-boot count, resume) is complete and persisted; otherwise return as soon as QEMU runs."""
        if self.running:
            raise QemuError("device is already powered on")
        if not self.firmware.is_file():
            raise QemuError(f"firmware not built: {self.firmware}")
        if not self.flash_path.exists():
            self.flash_path.write_bytes(b"\xff" * self.provision.flash_size)
        elif self.flash_path.stat().st_size != self.provision.flash_size:
            raise QemuError(
                f"{self.flash_path} holds {self.flash_path.stat().st_size} bytes but this device's flash "
                f"is {self.provision.flash_size} bytes (slot size {self.provision.slot_size}): "
                "wrong work directory?"
            )
        self.provision_path.write_bytes(self.provision.encode())
        sock_dir = Path(tempfile.mkdtemp(prefix="tfq-", dir="/tmp"))  # short: unix paths max 108 bytes
        serial_path, qmp_path, gdb_path = sock_dir / "s", sock_dir / "q", sock_dir / "g"
        listeners = []
        gdb_args = ["-chardev", f"socket,id=gdb,path={gdb_path}", "-gdb", "chardev:gdb"] if self.gdb else []
        try:
            for path in (serial_path, qmp_path, gdb_path)[: 3 if self.gdb else 2]:
                listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                listener.bind(str(path))
                listener.listen(1)
                listeners.append(listener)
            args = [
                QEMU, "-M", MACHINE, "-display", "none", "-monitor", "none", "-nodefaults",
                "-kernel", str(self.firmware),
                "-chardev", f"socket,id=uart0,path={serial_path}", "-serial", "chardev:uart0",
                "-chardev", f"socket,id=qmp,path={qmp_path}", "-mon", "chardev=qmp,mode=control",
                "-device", f"loader,file={self.flash_path},addr={FLASH_BASE:#x},force-raw=on",
                "-device", f"loader,file={self.provision_path},addr={PROVISION_BASE:#x},force-raw=on",
                *gdb_args,
                *self.extra_args,
            ]  # fmt: skip
            with self.log_path.open("ab") as log:
                self._proc = subprocess.Popen(
                    args, stdin=subprocess.DEVNULL, stdout=log, stderr=log, preexec_fn=_die_with_parent
                )
            conns: list[socket.socket] = []
            try:
                for listener in listeners:
                    conns.append(self._accept(listener))
            except QemuError:
                for conn in conns:
                    conn.close()
                self._kill()
                raise
        finally:
            for listener in listeners:
                listener.close()
            shutil.rmtree(sock_dir, ignore_errors=True)
        gdb_stub = _GdbStub(conns[2], self.timeout) if self.gdb else None
        self._sockets = _Sockets(conns[0], conns[1], gdb_stub)
        self._cut_at = None
        self._breakpoints = []
        self.flash_ops = 0
        self._decoder = frames.FrameDecoder()
        self._pending.clear()
        self._qmp_greeting()
        self.boots += 1
        if wait_ready:
            self.hello()

    def _accept(self, listener: socket.socket) -> socket.socket:
        """Wait for QEMU to connect, failing fast (with its log) if it exits instead."""
        deadline = time.monotonic() + self.timeout
        listener.settimeout(0.05)
        while True:
            try:
                conn, _ = listener.accept()
                return conn
            except TimeoutError:
                pass
            if self._proc is None or self._proc.poll() is not None:
                log = self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""
                raise QemuError(f"QEMU exited before connecting its sockets:\n{log}")
            if time.monotonic() > deadline:
                raise QemuError(f"QEMU did not connect its sockets; see {self.log_path}")

    def power_off(self) -> None:
        """Freeze the CPU, save the flash, kill QEMU: a power loss at whatever instruction it was on."""
        if not self.running:
            raise QemuError("device is not powered on")
        try:
            self._qmp("stop")
            self._save_flash(self.flash_path)
        finally:
            self._kill()

    def power_cycle(self, wait_ready: bool = True) -> None:
        self.power_off()
        self.power_on(wait_ready)

    def cut_power(self, after_bytes: bytes = b"", delay: float = 0.0) -> None:
        """Write after_bytes to the UART (e.g. a frame), wait delay seconds, then cut the power without
        waiting for any answer; the firmware may be anywhere in its work."""
        if after_bytes:
            self._serial().sendall(after_bytes)
        if delay > 0:
            time.sleep(delay)
        self.power_off()

    def cut_at_flash_op(self, n: int | None) -> None:
        """Deterministic power cut: break on the flash driver's program and erase entry points and cut
        the power just before the n-th flash operation from now starts (n >= 1), while a request waits
        for its answer; that request then raises PowerCut. n=None only counts (`flash_ops`). Needs
        gdb=True."""
        if self._sockets is None or self._sockets.gdb is None:
            raise QemuError("cut_at_flash_op needs a running device created with gdb=True")
        if n is not None and n < 1:
            raise ValueError("n counts flash operations from 1")
        stub = self._sockets.gdb
        stub.halt()
        self._breakpoints = [firmware_symbol(self.firmware, name) for name in FLASH_OP_SYMBOLS]
        stub.set_breakpoints(self._breakpoints)
        self._cut_at = n
        self.flash_ops = 0
        stub.resume()

    def _on_gdb_stop(self) -> None:
        """A breakpoint on a flash operation: count it, and cut there or let the CPU go on."""
        assert self._sockets is not None and self._sockets.gdb is not None
        if not self._breakpoints:  # a stop nobody asked for (QEMU pauses when the stub connects)
            self._sockets.gdb.resume()
            return
        self.flash_ops += 1
        if self._cut_at is not None and self.flash_ops >= self._cut_at:
            self.power_off()
            raise PowerCut(f"power cut before flash operation {self.flash_ops}")
        self._sockets.gdb.resume_from(self._breakpoints)

    def close(self) -> None:
        """Kill QEMU if it runs (flash not saved) and remove a temporary work directory."""
        self._kill()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _kill(self) -> None:
        if self._sockets is not None:
            socks = [self._sockets.serial, self._sockets.qmp]
            if self._sockets.gdb is not None:
                socks.append(self._sockets.gdb.sock)
            for sock in socks:
                with contextlib.suppress(OSError):
                    sock.close()
            self._sockets = None
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait(timeout=self.timeout)
            self._proc = None

    # ----------------------------------------------------------------- flash

    def read_flash(self) -> bytes:
        """The whole emulated flash as it is now (the CPU is paused while it is copied)."""
        if not self.running:
            return self.flash_path.read_bytes()
        return self.read_memory(FLASH_BASE, self.provision.flash_size)

    def read_memory(self, address: int, size: int) -> bytes:
        """size bytes of guest physical memory from address, copied while the CPU is paused."""
        if not self.running:
            raise QemuError("device is not powered on")
        self._qmp("stop")
        try:
            dump = self.workdir / "memory-read.bin"
            self._qmp("pmemsave", val=address, size=size, filename=str(dump))
            data = dump.read_bytes()
            dump.unlink()
            return data
        finally:
            self._qmp("cont")

    def _save_flash(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        size = self.provision.flash_size
        self._qmp("pmemsave", val=FLASH_BASE, size=size, filename=str(tmp))
        if tmp.stat().st_size != size:
            raise QemuError(f"pmemsave wrote {tmp.stat().st_size} bytes, expected {size}")
        os.replace(tmp, path)

    # ----------------------------------------------------------------- QMP

    def _qmp_greeting(self) -> None:
        greeting = self._qmp_read()
        if "QMP" not in greeting:
            raise QemuError(f"unexpected QMP greeting: {greeting}")
        self._qmp("qmp_capabilities")

    def _qmp(self, command: str, **arguments: object) -> object:
        assert self._sockets is not None
        message: dict[str, object] = {"execute": command}
        if arguments:
            message["arguments"] = arguments
        self._sockets.qmp.sendall(json.dumps(message).encode() + b"\n")
        while True:
            reply = self._qmp_read()
            if "return" in reply:
                return reply["return"]
            if "error" in reply:
                raise QemuError(f"QMP {command} failed: {reply['error']}")
            # anything else is an asynchronous event (STOP, RESUME...): skip it

    def _qmp_read(self) -> dict[str, object]:
        assert self._sockets is not None
        sock, buf = self._sockets.qmp, self._sockets.qmp_buffer
        sock.settimeout(self.timeout)
        while b"\n" not in buf:
            try:
                data = sock.recv(4096)
            except TimeoutError as exc:
                raise QemuError("QMP did not answer") from exc
            if not data:
                raise QemuError(f"QMP connection closed; see {self.log_path}")
            buf += data
        line, _, rest = bytes(buf).partition(b"\n")
        buf[:] = rest
        parsed = json.loads(line)
        if not isinstance(parsed, dict):
            raise QemuError(f"unexpected QMP message: {line!r}")
        return parsed

    # ----------------------------------------------------------------- UART frames

    def _serial(self) -> socket.socket:
        if self._sockets is None:
            raise QemuError("device is not powered on")
        return self._sockets.serial

    def send_body(self, body: bytes) -> None:
        """One frame carrying body (any bytes: a message, or garbage for robustness tests)."""
        self._serial().sendall(frames.encode_frame(body))

    def send_raw(self, data: bytes) -> None:
        """Bytes straight onto the UART, framing not applied (for line-noise tests)."""
        self._serial().sendall(data)

    def recv_frame(self, timeout: float | None = None) -> frames.FrameEvent:
        """The next frame event the firmware sent (a good body or a decoding error)."""
        sock = self._serial()
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self._pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise QemuError("no frame from the device before the timeout")
            gdb = self._sockets.gdb if self._sockets is not None else None
            if gdb is not None:
                if gdb.poll_stop() is not None:
                    self._on_gdb_stop()
                    continue
                left = min(left, 0.01)  # keep an eye on the gdbstub while waiting for the UART
            sock.settimeout(left)
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            if not data:
                raise QemuError(f"UART closed by QEMU; see {self.log_path}")
            self._pending.extend(self._decoder.feed(data))
        return self._pending.pop(0)

    def request(self, request: frames.Request, timeout: float | None = None) -> frames.Response:
        """Send one request and return the device's response to it (success or ERROR message: check
        `.error()`), like `simulator.runtime.DeviceRuntime.request`, so either transport fits a driver."""
        request_id = self._next_id
        self._next_id = self._next_id % 0xFFFF + 1  # ids 1..65535; 0 is reserved for frame errors
        self.send_body(request.encode(request_id))
        while True:
            event = self.recv_frame(timeout)
            if event.body is None:
                raise frames.ProtocolError(f"device sent a bad frame: {frames.error_name(event.error)}")
            response = frames.decode_message(event.body)
            if response.request_id == request_id:
                return response
            if response.request_id == 0 and response.is_error:
                raise response.error() or frames.ProtocolError("empty frame error")
            # a late answer to an earlier request (after a timeout): drop it

    def call(self, request: frames.Request, timeout: float | None = None) -> bytes:
        """The success payload of a request; an ERROR response raises frames.DeviceError."""
        return self.request(request, timeout).raise_for_error().payload

    def hello(self) -> frames.Hello:
        return frames.parse_hello(self.call(frames.hello()))

    def state(self) -> frames.DeviceState:
        return frames.parse_state(self.call(frames.state()))

    def upload(self, package: bytes, chunk_size: int = 1024, wrap: bytes | None = None) -> frames.PhaseReport:
        """INSTALL_BEGIN with the manifest, the content key `wrap` of an encrypted package (INSTALL_KEY,
        PROTOCOL 6.4), the payload in chunks from the resume offset, INSTALL_END."""
        if not 1 <= chunk_size <= frames.MAX_CHUNK:
            raise ValueError(f"chunk size must be within 1..{frames.MAX_CHUNK}")
        progress = frames.parse_progress(self.call(frames.install_begin(package[:MANIFEST_SIZE])))
        if wrap is not None:
            progress = frames.parse_progress(self.call(frames.install_key(wrap)))
        payload = package[MANIFEST_SIZE:]
        offset = progress.offset
        while offset < len(payload):
            data = payload[offset : offset + chunk_size]
            progress = frames.parse_progress(self.call(frames.install_chunk(offset, data)))
            offset = progress.offset
        return frames.parse_phase(self.call(frames.install_end()))
