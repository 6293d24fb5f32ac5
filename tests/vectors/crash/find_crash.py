"""Search mutations of a valid model for ones the C engine accepts but that kill the TFLM reference
interpreter (signal) or hang it. Each candidate runs in a forked child, so a crash only ends the child.

    .venv/bin/python tests/vectors/crash/find_crash.py tests/vectors/model.tflite 3000 [seed]

Prints one line per crash/hang: index, outcome, mutated offsets; writes the first crashing model to
tests/vectors/crash/found_<index>.tflite.
"""

from __future__ import annotations

import os
import random
import signal
import sys
from pathlib import Path

from tinyfleet.device.engine import Engine, EngineError
from tinyfleet.signing import selftest

INTERESTING = (0x00, 0x01, 0x7F, 0x80, 0xFF)


def mutate(rng: random.Random, base: bytes) -> tuple[bytes, list[int]]:
    data = bytearray(base)
    offsets = []
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(data))
        data[at] = rng.choice(INTERESTING) if rng.random() < 0.5 else rng.randrange(256)
        offsets.append(at)
    return bytes(data), offsets


def run_child(model: bytes) -> int:
    signal.alarm(10)
    try:
        Engine(model)
    except EngineError:
        return 3  # the C engine refuses it: never reaches the reference interpreter
    except Exception:
        return 5
    try:
        selftest.expected_output_sha256(model, 1)
    except Exception:
        return 4  # a clean Python error: the server already answers 422
    return 0


def main() -> None:
    base = Path(sys.argv[1]).read_bytes()
    count = int(sys.argv[2])
    rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 11)
    Engine(base)  # load the library and the interpreter before forking
    selftest.expected_output_sha256(base, 1)
    tally: dict[str, int] = {}
    saved = False
    for index in range(count):
        model, offsets = mutate(rng, base)
        pid = os.fork()
        if pid == 0:
            os._exit(run_child(model))
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status):
            outcome = signal.Signals(os.WTERMSIG(status)).name
            print(index, outcome, offsets, flush=True)
            if not saved and outcome != "SIGALRM":
                Path(__file__).with_name(f"found_{index}.tflite").write_bytes(model)
                saved = True
        else:
            outcome = {0: "ok", 3: "engine_refused", 4: "reference_error", 5: "engine_exception"}.get(
                os.WEXITSTATUS(status), f"exit{os.WEXITSTATUS(status)}"
            )
        tally[outcome] = tally.get(outcome, 0) + 1
    print(tally)


if __name__ == "__main__":
    main()
