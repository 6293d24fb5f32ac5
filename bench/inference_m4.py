#!/usr/bin/env python3
"""Instructions per inference of the real TFLM models on the Cortex-M4 (QEMU mps2-an386, engine build).

For each model in ../shared/models (and the project's test model) the script signs a package with a
throw-away bench key, installs it over the emulated UART on `firmware-engine.elf`, runs the trial
self-test on the M4 (its expected digest comes from the TFLite Micro reference interpreter, so a pass
means the M4 output is bit-exact with TFLM), confirms, then sends INFER with the self-test input.
QEMU runs with `-icount shift=0` (1 instruction = 1 ns of virtual time) and the firmware reports the
inference latency in virtual microseconds from SysTick, so instructions = latency_us x 1000
(resolution 1,000 instructions). These are instructions executed, not cycles. The runtime's TELEMETRY
(PROTOCOL 3.2.6) also reports the invoke's SysTick cycles, measured (not estimated) by the port: at the
25 MHz core clock under `-icount shift=0` one cycle is 40 instructions, so instructions = cycles x 40
(resolution 40 instructions); the table shows both, taken from the same single INFER.

    .venv/bin/python bench/inference_m4.py [--markdown] [--model PATH ...] [--tiny] [--only]

--model adds a .tflite of your own (e.g. agent_firmware/tests/vectors/engine/dw_mult.tflite) to the list.
--tiny adds the MLPerf-Tiny-shaped models of tests/support/tiny_models.py (ad, ic, kws; built by
TensorFlow with random weights, cached); --only measures only the models given by --model / --tiny.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from m4_common import ICOUNT, print_markdown, skipped  # noqa: E402

from tinyfleet.device import frames  # noqa: E402
from tinyfleet.signing.keys import private_key_from_seed, public_raw  # noqa: E402
from tinyfleet.signing.package import build_package  # noqa: E402
from tinyfleet.signing.selftest import expected_output_sha256, input_sizes, selftest_input  # noqa: E402
from tinyfleet.sim.qemu import Provision, QemuDevice, build_firmware  # noqa: E402

MODELS_DIR = REPO.parent / "shared" / "models"
MODELS = [
    REPO / "tests" / "vectors" / "model.tflite",
    MODELS_DIR / "hello_world_int8.tflite",
    MODELS_DIR / "micro_speech_quantized.tflite",
    MODELS_DIR / "person_detect.tflite",
]
HARDWARE_CLASS = 0x4D34  # "M4"
ARENA = 96 * 1024  # ENGINE_PORT_ARENA_SIZE
SEED = 0x5EED1234


def engine_facts(model: bytes) -> tuple[int | None, int | None]:
    """Exact arena bytes and multiply-accumulates per inference of the C engine (host build), or
    (None, None) when the host library is not built."""
    from tinyfleet.device.engine import Engine
    from tinyfleet.device.library import LibraryError

    try:
        engine = Engine(model)
    except LibraryError:
        return None, None
    return engine.arena_used, engine.mac_count


def bench_device(
    tmp: Path, elf: Path, extra_args: Sequence[str], timeout: float
) -> tuple[Ed25519PrivateKey, QemuDevice]:
    """The throw-away bench key and a device (not yet powered on) that trusts it."""
    key = private_key_from_seed(hashlib.sha256(b"tinyfleet inference bench").digest())
    provision = Provision([public_raw(key)], hardware_class=HARDWARE_CLASS, ram_budget=ARENA)
    return key, QemuDevice(provision, tmp, elf, extra_args=extra_args, timeout=timeout)


def install(dev: QemuDevice, key: Ed25519PrivateKey, path: Path, arena: int | None, sequence: int) -> None:
    """Sign the model at path, upload it, activate, run the trial self-test (its digest is TFLM's, so a
    pass means the M4's output is bit-exact with TFLM) and confirm; raises frames.DeviceError if refused."""
    model = path.read_bytes()
    package = build_package(
        model, key, name=path.stem[:31], version="1.0.0", sequence=sequence, security_counter=0,
        hardware_class=HARDWARE_CLASS, min_runtime_version="0.1.0", arena_bytes=arena, selftest_seed=SEED,
        selftest_output_sha256=expected_output_sha256(model, SEED),
    )  # fmt: skip
    dev.upload(package, frames.MAX_CHUNK)
    for request in (frames.activate(), frames.selftest(), frames.confirm()):
        dev.call(request)


def load_input(dev: QemuDevice, model: bytes) -> Callable[[], bytes]:
    """Send the self-test input (first input tensor) in frame-sized INFER slices, all but the last;
    returns the call that sends the last slice and runs one inference (its reply)."""
    data = selftest_input(SEED, input_sizes(model)[0])
    step = frames.MAX_INFER_INPUT
    last = (len(data) - 1) // step * step
    for offset in range(0, last, step):
        dev.call(frames.infer(data[offset : offset + step], offset, run=False))
    return lambda: dev.call(frames.infer(data[last:], last, run=True))


@contextmanager
def inference_session(
    elf: Path, path: Path, tmp: Path, extra_args: Sequence[str], timeout: float
) -> Iterator[tuple[QemuDevice, Callable[[], bytes]]]:
    """A powered-on device running elf with the model at path installed and its input loaded: yields
    the device and the call that runs one inference (bench/inference_m4_profile.py, _trace.py)."""
    key, dev = bench_device(tmp, elf, extra_args, timeout)
    dev.power_on()
    try:
        model = path.read_bytes()
        install(dev, key, path, engine_facts(model)[0], sequence=1)
        yield dev, load_input(dev, model)
    finally:
        dev.close()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    parser.add_argument("--model", type=Path, action="append", default=[], help="another .tflite to measure")
    parser.add_argument("--tiny", action="store_true", help="add the MLPerf-Tiny-shaped models (ad, ic, kws)")
    parser.add_argument("--only", action="store_true", help="skip the built-in model list")
    args = parser.parse_args()
    if skipped():
        return 0
    try:
        import tflite_micro  # noqa: F401  (the reference interpreter computes the self-test digests)
    except ImportError:
        print("skipped: tflite_micro (TFLite Micro's Python interpreter) is not installed")
        return 0
    extra = list(args.model)
    if args.tiny:
        from tests.support.tiny_models import FULL, ensure

        extra += list(ensure(FULL).values())
    elf = build_firmware("engine")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        key, dev = bench_device(Path(tmp), elf, ICOUNT, timeout=300)
        dev.power_on()
        try:
            paths = [p for p in [*([] if args.only else MODELS), *extra] if p.exists()]
            for sequence, path in enumerate(paths, start=1):
                model = path.read_bytes()
                arena, macs = engine_facts(model)
                try:
                    install(dev, key, path, arena, sequence)
                except frames.DeviceError as err:
                    rows.append((path.name, len(model), arena, f"refused: {err.name}", "", "", "", "", ""))
                    continue
                result = frames.parse_infer(load_input(dev, model)())
                assert result is not None  # a running INFER answers with its output
                insns = result.latency_us * 1000
                tel = frames.parse_telemetry(dev.call(frames.telemetry())).model
                if tel.latency_estimated or tel.inferences != 1:
                    sys.exit(f"{path.name}: telemetry is not one measured inference: {tel}")
                per_mac = f"{insns / macs:.1f}" if macs else ""
                rows.append(
                    (
                        path.name,
                        len(model),
                        arena,
                        "bit-exact",
                        f"{insns:,}",
                        f"{tel.cycles_total:,}",
                        f"{tel.cycles_total * 40:,}",
                        f"{macs:,}" if macs else "",
                        per_mac,
                    )
                )
        finally:
            dev.close()

    header = (
        "model",
        "bytes",
        "arena",
        "self-test vs TFLM",
        "instructions / inference",
        "telemetry cycles",
        "cycles x 40",
        "MACs",
        "insns / MAC",
    )
    if args.markdown:
        print_markdown(header, "|---|---:|---:|---|---:|---:|---:|---:|---:|", rows)
    else:
        print("  ".join(header))
        for row in rows:
            print("  ".join(str(c) for c in row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
