"""The upload check's child process (`python -m tinyfleet.server.services.model_worker`): runs one
untrusted model through the C engine and the TFLM reference interpreter, so that a model that makes
either abort, segfault, spin or eat memory ends this process, never the server (model_check.py).

Protocol: the worker imports everything first (so a spare can wait warm), then reads from stdin one JSON
line {"memory_bytes", "cpu_seconds", "encoding" (0 raw, 1 compressed), "seed" (0: derive it)} followed
by the payload to EOF, applies the limits, and writes ONE JSON line on its original stdout:
{"facts": {"arena_bytes", "selftest_seed", "selftest_sha256", "model_sha256"}}, {"invalid": message}
or {"unchecked": reason} (no host library). Anything else (a signal, no answer) is the parent's problem.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import resource
import sys
from typing import Any, TextIO

MIB = 1024 * 1024


def selftest_seed_for(model: bytes) -> int:
    """A non-zero seed derived from the model, so rebuilding the same model gives the same manifest."""
    return int.from_bytes(hashlib.sha256(model).digest()[:4], "little") or 1


def _prepare() -> str | None:
    """Load the engine library and the reference interpreter now; the reason if the library is missing."""
    # everything check() uses, so that a spare waits with it loaded (importing it costs ~250 ms)
    for module in ("tinyfleet.device.engine_check", "tinyfleet.signing.delta"):
        importlib.import_module(module)
    from tinyfleet.device.library import LibraryError, load_library
    from tinyfleet.signing import selftest

    if selftest.reference_available():
        import numpy  # noqa: F401
        from tflite_micro.python.tflite_micro import runtime  # noqa: F401
    try:
        load_library()
    except LibraryError as exc:
        return str(exc)
    return None


def _limit(memory_bytes: int, cpu_seconds: float) -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = int(usage.ru_utime + usage.ru_stime + cpu_seconds) + 1  # on top of what the imports used
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))


def check(payload: bytes, encoding: int, seed: int) -> dict[str, Any]:
    from tinyfleet.device.engine_check import EngineRefused, EngineUnavailable, load_engine
    from tinyfleet.signing import delta, selftest
    from tinyfleet.signing.errors import SigningError
    from tinyfleet.signing.tflite import parse_model

    model = payload
    if encoding == 1:
        try:
            model = delta.decode(payload)
        except delta.DeltaError as exc:
            return {"invalid": f"cannot decode the compressed payload: {exc}"}
    try:
        parse_model(model)
    except (SigningError, ValueError) as exc:
        return {"invalid": f"cannot read the model: {exc}"}
    try:
        engine = load_engine(model)
    except EngineRefused as exc:  # the same wording as `tinyfleet sign build`
        return {"invalid": str(exc)}
    except EngineUnavailable as exc:
        return {"unchecked": str(exc)}
    seed = seed or selftest_seed_for(model)
    if selftest.reference_available():
        try:
            digest = selftest.expected_output_sha256(model, seed)
        except SigningError as exc:
            return {"invalid": f"the reference interpreter cannot run this model: {exc}"}
    else:  # the engine is bit-exact with the reference interpreter
        digest = engine.selftest_digest(seed)
    return {
        "facts": {
            "arena_bytes": engine.arena_used,
            "selftest_seed": seed,
            "selftest_sha256": digest.hex(),
            "model_sha256": hashlib.sha256(model).hexdigest(),
        }
    }


def serve(answer_to: TextIO) -> None:
    unchecked = _prepare()
    header = sys.stdin.buffer.readline()
    if not header:
        return  # the server stopped before handing this (spare) worker a model
    request = json.loads(header)
    payload = sys.stdin.buffer.read()
    if unchecked is not None:
        answer: dict[str, Any] = {"unchecked": unchecked}
    else:
        _limit(int(request["memory_bytes"]), float(request["cpu_seconds"]))
        try:
            answer = check(payload, int(request["encoding"]), int(request["seed"]))
        except MemoryError:
            limit = int(request["memory_bytes"]) // MIB
            answer = {"invalid": f"model rejected: the model checker ran out of memory (limit {limit} MiB)"}
    answer_to.write(json.dumps(answer) + "\n")
    answer_to.flush()


def main() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # an aborting model must not leave core files
    answer_to = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # TFLM prints its complaints on stdout: keep them out of the answer
    serve(answer_to)
    os._exit(0)  # the answer is out: skip the interpreter's teardown (~60 ms with numpy loaded)


if __name__ == "__main__":
    main()
