"""A simulated device's install state machine (docs/PROTOCOL.md 4.1, 4.3, 4.4): from a desired state to
chunk requests, the bytes fed to the C runtime, and the confirmed (or failed, or reverted) install.

Every decision about a package (signature, policy, offsets, digests, slots, self-test, revert) is taken by
the runtime behind `RuntimeDriver`; this code moves bytes to it and reports what it says. Chunk requests
are retried on a timeout that follows the measured round trip (RFC 6298), doubled with jitter per retry.
`InstallMachine` is a base of `tinyfleet.sim.agent.DeviceAgent`, which supplies the MQTT session (the
methods at the end of the class).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import random
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tinyfleet.device import frames
from tinyfleet.signing.manifest import MANIFEST_SIZE
from tinyfleet.sim.profiles import DeviceProfile
from tinyfleet.sim.runtime_driver import RuntimeDriver, RuntimeFailure, RuntimeState

CHUNK_FORMAT = 1
CHUNK_ERROR_FORMAT = 0xFF  # first byte of a chunk error (PROTOCOL 4.3)


@dataclass
class AgentStats:
    """Counters a fleet aggregates: what the device saw, not what the server believes."""

    chunks_received: int = 0
    chunk_bytes: int = 0
    chunk_requests: int = 0
    malformed: int = 0
    installs_confirmed: int = 0
    installs_failed: int = 0
    reverts: int = 0
    power_cuts: int = 0
    reconnects: int = 0
    chunk_retries: int = 0  # requests re-sent because no answer came in time (included in chunk_requests)
    chunk_duplicates: int = 0  # answers that came after the device had the bytes (a retry's second answer)


@dataclass
class _Action:
    """The desired operation being carried out."""

    action_id: str | None
    operation: str
    package_id: str
    package_size: int
    model_sha256: str
    chunk_size: int
    offset: int = 0  # next package offset wanted
    manifest: bytearray = field(default_factory=bytearray)
    bytes_received: int = 0
    done: bool = False
    retries: int = 0  # consecutive re-requests of the same offset (back-off)
    resumable: bool = False  # the runtime may hold part of this download (the agent lost power meanwhile)
    content_key: bytes | None = None  # the 80-byte key wrap of an encrypted package (PROTOCOL 4.1, 6.3)


def parse_chunk(data: bytes) -> tuple[str, int, int, bytes]:
    """Decode a binary chunk (section 4.3) into (package_id, offset, package_size, data)."""
    if len(data) < 2 or data[0] != CHUNK_FORMAT:
        raise ValueError("chunk: bad format byte")
    id_len = data[1]
    head = 2 + id_len + 8
    if len(data) < head:
        raise ValueError("chunk: truncated header")
    try:
        package_id = data[2 : 2 + id_len].decode("ascii")
    except UnicodeDecodeError:
        raise ValueError("chunk: package id is not ASCII") from None
    offset, package_size = struct.unpack_from("<II", data, 2 + id_len)
    return package_id, offset, package_size, bytes(data[head:])


def parse_desired(payload: bytes) -> _Action:
    """Validate a desired-state JSON (section 4.1); ValueError with a reason when malformed."""
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError("desired: not JSON") from None
    if not isinstance(doc, dict):
        raise ValueError("desired: not a JSON object")
    operation = doc.get("operation", "none")
    if operation not in ("install", "revert", "none"):
        raise ValueError(f"desired: unknown operation {operation!r}")
    action_id = doc.get("action_id")
    if action_id is not None and not isinstance(action_id, str):
        raise ValueError("desired: action_id must be a string or null")
    if operation == "none":
        return _Action(action_id, "none", "", 0, "", 0)
    sha = doc.get("model_sha256")
    if not isinstance(sha, str) or len(sha) != 64:
        raise ValueError("desired: model_sha256 must be 64 hex digits")
    try:
        bytes.fromhex(sha)
    except ValueError:
        raise ValueError("desired: model_sha256 must be 64 hex digits") from None
    package_id = doc.get("package_id", "")
    size = doc.get("package_size", 0)
    chunk = doc.get("chunk_size", 1024)
    if operation == "install":
        if (
            not isinstance(package_id, str)
            or not package_id
            or not package_id.isascii()
            or len(package_id) > 255
        ):
            raise ValueError("desired: package_id must be a non-empty ASCII string")
        if not isinstance(size, int) or isinstance(size, bool) or not MANIFEST_SIZE < size < 2**32:
            raise ValueError("desired: package_size out of range")
        if not isinstance(chunk, int) or isinstance(chunk, bool) or not 16 <= chunk <= 1 << 20:
            raise ValueError("desired: chunk_size out of range")
    return _Action(
        action_id,
        operation,
        str(package_id),
        int(size or 0),
        sha.lower(),
        int(chunk or 1024),
        content_key=_content_key(doc.get("content_key")) if operation == "install" else None,
    )


def _content_key(value: Any) -> bytes | None:
    """The action's "content_key": base64 of the 80-byte wrap for this device, or absent/null."""
    if value is None:
        return None
    try:
        wrap = base64.b64decode(value, validate=True) if isinstance(value, str) else b""
    except binascii.Error:
        wrap = b""
    if len(wrap) != frames.KEY_WRAP_SIZE:
        raise ValueError(f"desired: content_key must be base64 of {frames.KEY_WRAP_SIZE} bytes")
    return wrap


class InstallMachine:
    """The desired operation in progress and its chunk requests."""

    # Supplied by the agent.
    driver: RuntimeDriver
    profile: DeviceProfile
    stats: AgentStats
    rng: random.Random  # the seeded faults' stream
    _jitter: random.Random
    _connected: bool

    def __init__(self) -> None:
        self._action: _Action | None = None
        self._chunk_timer: asyncio.TimerHandle | None = None
        # The runtime's state as last read. Only this machine changes the runtime, always from
        # _on_desired or _accept_chunk (which forget it) and reads it again when an action ends, so the
        # agent's telemetry can use it instead of asking the runtime every report (issue 12).
        self._known_state: RuntimeState | None = None
        self._cut_actions: set[str | None] = set()  # actions whose install already lost power once
        self._asked_at: float | None = None  # when the pending chunk request left (RTT sample)
        self._first_asked = 0.0  # when the pending offset was first asked for (before any retry)
        # (package id, offset, delay from the first request) of a chunk accepted after a retry: if the
        # chunk comes again, the retry was spurious and that delay was a true round trip.
        self._maybe_spurious: tuple[str, int, float] | None = None
        self._srtt = 0.0
        self._rttvar = 0.0

    @property
    def round_trip(self) -> float:
        """The smoothed chunk round trip in seconds (RFC 6298's SRTT); 0.0 before the first sample."""
        return self._srtt

    def _on_desired(self, payload: bytes) -> None:
        if not payload:
            return  # retained message cleared
        self._known_state = None
        action = parse_desired(payload)
        current = self._action
        if current is not None and not current.done and current.action_id == action.action_id:
            # The same action again (reconnect re-delivers the retained desired): resume where we are.
            if current.operation == "install" and current.package_id == action.package_id:
                self._request_chunk()
            return
        self._cancel_chunk_timer()
        self._action = action
        if action.operation == "install":
            self._start_install(action)
        elif action.operation == "revert":
            self._do_revert(action)
        else:
            action.done = True

    def _state(self) -> RuntimeState:
        self._known_state = self.driver.state()
        return self._known_state

    def _start_install(self, action: _Action) -> None:
        state = self._state()
        active = state.active_model_sha256()
        if active == action.model_sha256:
            if state.phase == "trial":
                self._finish_trial(action)  # power lost after activate: finish the trial
            else:
                action.done = True
                self._status(action, "confirmed")
                # The answer to a desired sent again (its first confirm lost, e.g. with a broker node):
                # the reported state sent with that confirm may be lost too, and nothing else resends it.
                self.publish_reported()
            return
        action.resumable = state.phase in ("downloading", "downloaded")  # a download cut by a power loss
        self._status(action, "downloading")
        self._request_chunk()

    def _request_chunk(self) -> None:
        action = self._action
        if action is None or action.done or not self._connected:
            return
        length = min(action.chunk_size, action.package_size - action.offset)
        if action.offset < MANIFEST_SIZE and (action.resumable or action.manifest):
            # The manifest on its own when the runtime may resume past the next payload bytes (after a
            # power cut) or part of it arrived; else the first request takes the payload's first bytes
            # with it (one request fewer per device), held until the runtime accepts the manifest.
            length = min(length, MANIFEST_SIZE - action.offset)
        if length <= 0:
            return
        self.stats.chunk_requests += 1
        self._asked_at = time.monotonic() if action.retries == 0 else None  # no RTT sample from a retry
        if action.retries == 0:
            self._first_asked = time.monotonic()
        self._publish(
            "chunk/req", {"package_id": action.package_id, "offset": action.offset, "length": length}
        )
        self._cancel_chunk_timer()
        # Retransmission timeout as TCP does it (smoothed round trip + 4 deviations, RFC 6298), never
        # below the profile's timeout, doubled per retry: a busy server must not be asked twice as often.
        base = max(
            self.profile.chunk_timeout_s * self.profile.faults.slow_factor, self._srtt + 4 * self._rttvar
        )
        timeout = base * 2 ** min(action.retries, 4) + self.profile.link_delay(length)
        if action.retries:
            # Jitter: devices that timed out together (a busy server) must not all ask again together.
            timeout *= 1.0 + 0.5 * self._jitter.random()
        self._chunk_timer = self._later(timeout, lambda: self._chunk_timed_out(action))

    def _rtt_sample(self, action: _Action, offset: int) -> None:
        now = time.monotonic()
        if action.retries:
            # Which request this answers is unknown (Karn): no sample now, unless the other answer
            # follows (see _on_chunk), which shows the first request was answered first.
            self._maybe_spurious = (action.package_id, offset, now - self._first_asked)
            return
        if self._asked_at is None:
            return
        self._add_rtt(now - self._asked_at)
        self._asked_at = None

    def _add_rtt(self, rtt: float) -> None:
        if self._srtt == 0.0:
            self._srtt, self._rttvar = rtt, rtt / 2
        else:
            self._rttvar = 0.75 * self._rttvar + 0.25 * abs(self._srtt - rtt)
            self._srtt = 0.875 * self._srtt + 0.125 * rtt

    def _chunk_timed_out(self, action: _Action) -> None:
        if action is self._action and not action.done:
            action.retries += 1
            self.stats.chunk_retries += 1
            self._request_chunk()

    def _cancel_chunk_timer(self) -> None:
        if self._chunk_timer is not None:
            self._chunk_timer.cancel()
            self._chunk_timer = None

    def _on_chunk(self, payload: bytes) -> None:
        if len(payload) >= 2 and payload[0] == CHUNK_ERROR_FORMAT:
            # A chunk error (4.3): the request itself was malformed, asking again gets the same answer.
            action = self._action
            if action is not None and not action.done and action.operation == "install":
                reason = payload[2:].decode("ascii", "replace")
                self._runtime_failed(action, RuntimeFailure(payload[1], f"chunk error: {reason}"))
            return
        package_id, offset, package_size, data = parse_chunk(payload)
        action = self._action
        if action is None or action.operation != "install" or package_id != action.package_id:
            return  # a late chunk of an earlier action
        if offset < action.offset and package_size == action.package_size:
            self.stats.chunk_duplicates += 1  # answered twice: the server sent these bytes for nothing
            spurious = self._maybe_spurious
            if spurious is not None and spurious[:2] == (package_id, offset):
                # The retry was spurious (the server was slow, not the link): the first answer's delay
                # from the first request is a round trip, and raises the timeout of the next requests.
                self._add_rtt(spurious[2])
                self._maybe_spurious = None
            return
        if action.done or offset != action.offset or package_size != action.package_size or not data:
            return  # out of order: the timer re-asks for the right offset
        if self.profile.faults.chunk_loss and self.rng.random() < self.profile.faults.chunk_loss:
            return  # lost on the link; the timer re-asks
        self._cancel_chunk_timer()
        delay = self.profile.link_delay(len(data))
        if delay > 0:
            self._later(delay, lambda: self._accept_chunk(action, offset, data))
        else:
            self._accept_chunk(action, offset, data)

    def _accept_chunk(self, action: _Action, offset: int, data: bytes) -> None:
        if action is not self._action or action.done or offset != action.offset:
            return
        self._known_state = None
        self.stats.chunks_received += 1
        self.stats.chunk_bytes += len(data)
        self._rtt_sample(action, offset)
        action.retries = 0
        action.bytes_received += len(data)
        try:
            if offset < MANIFEST_SIZE:
                head = data[: MANIFEST_SIZE - offset]
                action.manifest += head
                action.offset += len(head)
                if len(action.manifest) >= MANIFEST_SIZE:
                    self._maybe_arm_power_cut(action)
                    manifest = bytes(action.manifest[:MANIFEST_SIZE])
                    resume = self.driver.install_begin(manifest, action.content_key)
                    action.offset = MANIFEST_SIZE + resume
                    rest = data[len(head) :]
                    if rest and resume == 0:  # payload bytes that came with the manifest
                        self.driver.install_chunk(0, rest)
                        action.offset += len(rest)
                    else:  # the runtime resumes further on: those bytes are not used
                        action.bytes_received -= len(rest)
            else:
                self.driver.install_chunk(offset - MANIFEST_SIZE, data)
                action.offset += len(data)
        except RuntimeFailure as exc:
            self._runtime_failed(action, exc)
            return
        if action.offset >= action.package_size:
            self._finish_download(action)
        else:
            self._request_chunk()

    def _finish_download(self, action: _Action) -> None:
        # `verifying` and `trial` are not reported when the steps pass at once (PROTOCOL 4.4): the server
        # needs the outcome, and two statuses per device were a sixth of a rollout's device messages.
        try:
            self.driver.install_end()
            self.driver.activate()
        except RuntimeFailure as exc:
            self._runtime_failed(action, exc)
            return
        self._finish_trial(action)

    def _finish_trial(self, action: _Action) -> None:
        try:
            self.driver.selftest()
            self.driver.confirm()
        except RuntimeFailure as exc:
            if not self.driver.powered_off():
                self._status(action, "trial")  # it was on trial: the failure (e.g. SELFTEST_FAILED) follows
            self._runtime_failed(action, exc)
            return
        action.done = True
        self.stats.installs_confirmed += 1
        self._status(action, "confirmed")
        self.publish_reported()

    def _runtime_failed(self, action: _Action, exc: RuntimeFailure) -> None:
        if self.driver.powered_off():
            self._power_cycle()
            return
        action.done = True
        self.stats.installs_failed += 1
        self._cancel_chunk_timer()
        self._status(action, "failed", exc.code, exc.detail)
        self.publish_reported()

    def _maybe_arm_power_cut(self, action: _Action) -> None:
        p = self.profile.faults.power_cut_during_install
        # At most one cut per action (the injector's memory, not the device's): the resumed install
        # must be able to finish.
        if p and action.action_id not in self._cut_actions and self.rng.random() < p:
            self._cut_actions.add(action.action_id)
            # Somewhere within the install's flash writes (a small model's install is about 12 program and
            # erase operations: slot erase, header, payload pages, state commits).
            self.driver.arm_power_cut(self.rng.randint(1, 12), seed=self.rng.getrandbits(32))

    def _do_revert(self, action: _Action) -> None:
        state = self._state()
        # Already running the model to return to (an abandoned download of the newer one does not count:
        # it never became active) -> nothing to revert. In trial, the active model is the new one.
        if state.active_model_sha256() == action.model_sha256 and state.phase != "trial":
            action.done = True
            self._status(action, "rolled_back")
            return
        try:
            self.driver.revert()
        except RuntimeFailure as exc:
            self._runtime_failed(action, exc)
            return
        action.done = True
        self.stats.reverts += 1
        state = self._state()
        if state.active_model_sha256() == action.model_sha256:
            self._status(action, "rolled_back")
        else:
            self._status(action, "failed", 41, "previous slot does not hold the requested model")
        self.publish_reported()

    def _status(self, action: _Action, state: str, code: int = 0, error: str = "") -> None:
        if action.action_id is None:
            return
        self._publish(
            "status",
            {
                "action_id": action.action_id,
                "state": state,
                "error_code": code,
                "error": error,
                "offset": action.offset,
                "bytes_received": action.bytes_received,
            },
        )

    # ----- the agent's session ----------------------------------------------------------------------------

    def _publish(self, sub: str, doc: dict[str, Any], retain: bool = False) -> None:
        raise NotImplementedError

    def publish_reported(self) -> None:
        raise NotImplementedError

    def _later(self, delay: float, fn: Callable[[], None]) -> asyncio.TimerHandle:
        raise NotImplementedError

    def _power_cycle(self) -> None:
        raise NotImplementedError
