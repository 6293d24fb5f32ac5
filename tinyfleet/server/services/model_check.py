"""Run an uploaded model through the real C engine (the one devices run) before storing it: a model with
an op the engine lacks is refused at upload with the op named, instead of failing on every device's
trial. The engine also gives the exact tensor arena, and the TFLM reference interpreter the self-test
digest the manifest carries.

Both run untrusted bytes in native code that can abort, segfault or spin on a crafted model, so the
check runs in a child process (model_worker.py) under CPU, address-space and wall-time limits (the
last a generous backstop: CPU time is what stops a spinning model, whatever the machine's load); whatever
goes wrong there becomes Invalid naming the model as rejected. A warm spare worker (imports done, no
model yet) is kept ready, so an upload does not wait for the interpreter to start; each worker checks
ONE model and exits, so one model can never affect the check of another."""

from __future__ import annotations

import atexit
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass

from tinyfleet.server.services.errors import Invalid
from tinyfleet.server.services.model_worker import selftest_seed_for as selftest_seed_for

log = logging.getLogger(__name__)

MIB = 1024 * 1024


@dataclass(frozen=True)
class EngineFacts:
    arena_bytes: int
    selftest_seed: int
    selftest_output_sha256: bytes
    model_sha256: bytes


@dataclass(frozen=True)
class CheckLimits:
    seconds: float = 20.0  # CPU time of one check: the guard against a model that spins
    memory_bytes: int = 512 * MIB  # address space of the worker; its imports take ~125 MiB
    # Wall time of one check: only a backstop (a worker stopped or starved), several times the CPU limit
    # so that a loaded machine, where a fine model waits for a core, does not refuse it.
    wall_seconds: float = 120.0


LIMITS = CheckLimits()


def _start_worker() -> subprocess.Popen[bytes]:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")  # no thread pools' reservations
    return subprocess.Popen(
        [sys.executable, "-m", "tinyfleet.server.services.model_worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )


class _Spare:
    """At most one started, not yet used worker; taken by the next check, replaced at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None

    def take(self) -> subprocess.Popen[bytes]:
        with self._lock:
            proc, self._proc = self._proc, _start_worker()
        if proc is None or proc.poll() is not None:  # none yet, or it died idle: use a fresh one
            if proc is not None:
                proc.communicate()
            proc = _start_worker()
        return proc

    def close(self) -> None:
        """Stop the idle spare (at exit: a worker left waiting on stdin would outlive the server)."""
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.communicate()


_spare = _Spare()
atexit.register(_spare.close)
# Each check is a process of ~50 MB resident: concurrent uploads wait for one of a few, not one per thread.
_running = threading.BoundedSemaphore(max(2, os.cpu_count() or 2))


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _run(payload: bytes, request: dict[str, int | float], limits: CheckLimits) -> dict[str, object]:
    try:
        proc = _spare.take()
    except OSError as exc:  # out of processes or memory on the server: refuse rather than check in-process
        log.error("cannot start the model checker: %s", exc)
        raise Invalid(f"model not checked: the model checker could not start ({exc.strerror})") from None
    data = json.dumps(request).encode() + b"\n" + payload
    try:
        out, err = proc.communicate(data, timeout=limits.wall_seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        wall = limits.wall_seconds
        raise Invalid(f"model rejected: the model checker did not finish within {wall:g} s") from None
    code = proc.returncode
    if code < 0:
        name = _signal_name(-code)
        if -code == signal.SIGXCPU:
            raise Invalid(f"model rejected: the model checker used more than {limits.seconds:g} s of CPU")
        log.warning("model checker killed by %s: %s", name, err.decode(errors="replace")[-500:])
        raise Invalid(f"model rejected: the model checker crashed ({name})")
    try:
        answer: dict[str, object] = json.loads(out)
    except ValueError:
        log.error("model checker exited %d without an answer: %s", code, err.decode(errors="replace")[-2000:])
        raise Invalid(f"model rejected: the model checker failed (exit status {code})") from None
    return answer


def check_model(
    payload: bytes, *, encoding: int = 0, seed: int = 0, limits: CheckLimits | None = None
) -> EngineFacts | None:
    """Facts from the engine and the reference interpreter for a raw (encoding 0) or compressed (1)
    model, the self-test run with `seed` (0: derived from the model); Invalid naming the problem if the
    model is refused or the check fails; None when the host library cannot be built or loaded (the
    upload then keeps the signing library's arena estimate and no self-test)."""
    limits = limits or LIMITS
    request = {
        "memory_bytes": limits.memory_bytes,
        "cpu_seconds": limits.seconds,
        "encoding": encoding,
        "seed": seed,
    }
    with _running:
        answer = _run(payload, request, limits)
    if "unchecked" in answer:
        log.warning("model not checked by the C engine: %s", answer["unchecked"])
        return None
    if "invalid" in answer:
        raise Invalid(str(answer["invalid"]))
    facts = answer["facts"]
    assert isinstance(facts, dict)
    return EngineFacts(
        arena_bytes=int(facts["arena_bytes"]),
        selftest_seed=int(facts["selftest_seed"]),
        selftest_output_sha256=bytes.fromhex(facts["selftest_sha256"]),
        model_sha256=bytes.fromhex(facts["model_sha256"]),
    )
