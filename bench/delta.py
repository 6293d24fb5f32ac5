"""Bytes on the wire per model update: the tinyfleet delta against established patch tools.

Pairs: the real successive model versions in ../shared/models/pairs, and pairs the compression pipeline
makes here, at width 16 (5.7 KB) and 192 (106 KB): retrained from scratch, last layer fine-tuned, pruned,
re-quantized (trained once with TensorFlow, cached under the temp dir). Prints Markdown tables for
docs/BENCHMARKS.md: sizes against the peers and whole-file lzma -9e, encode and C decode times, and the
decoder's RAM and flash size.

    .venv/bin/python bench/delta.py
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from delta_baselines import all_baselines  # noqa: E402

from tinyfleet.signing import delta  # noqa: E402

SHARED_PAIRS = ROOT.parent / "shared" / "models" / "pairs"
REAL_PAIRS = [
    ("hello_world_int8.0", "hello_world_int8.1"),
    ("hello_world_int8.1", "hello_world_int8.2"),
    ("micro_speech.0", "micro_speech.2"),
]


CACHE = Path(tempfile.gettempdir()) / "tinyfleet_delta_pairs"
UPDATES = ("retrained", "last-layer", "pruned-50%", "requantized")


def pipeline_pairs(width: int = 16) -> list[tuple[str, Path, Path]]:
    """v1 of the vibration classifier, then four kinds of update a team ships. Training is slow, so the
    models are cached in CACHE (delete it to retrain)."""
    name = f"vibration-w{width}"
    paths = {u: CACHE / f"{name}_{u}.tflite" for u in ("v1", *UPDATES)}
    if not all(p.exists() for p in paths.values()):
        CACHE.mkdir(parents=True, exist_ok=True)
        for u, blob in _train_pipeline_pairs(width).items():
            paths[u].write_bytes(blob)
    return [(f"{name} v1 -> {u}", paths["v1"], paths[u]) for u in UPDATES]


def _train_pipeline_pairs(width: int) -> dict[str, bytes]:
    import keras

    from tinyfleet.ml import architectures, compress, datasets, pipeline

    data = datasets.load("vibration", samples=1500, seed=0)
    train, _ = data.split(seed=0)
    classes = len(data.class_names)

    def build(seed: int) -> object:
        model = architectures.build("dense", data.input_shape, classes, width=width, seed=seed)
        return pipeline.train(model, train, epochs=8)

    v1 = build(0)
    files = {"v1": compress.quantize_int8(v1, train.x)}
    files["retrained"] = compress.quantize_int8(build(1), train.x)
    tuned = keras.models.clone_model(v1)
    tuned.set_weights(v1.get_weights())
    for layer in tuned.layers[:-2]:
        layer.trainable = False
    pipeline.train(tuned, train, epochs=3, learning_rate=0.002)
    files["last-layer"] = compress.quantize_int8(tuned, train.x)
    pruned = keras.models.clone_model(v1)
    pruned.set_weights(v1.get_weights())
    pruned.compile(keras.optimizers.Adam(0.002), loss="sparse_categorical_crossentropy")
    compress.prune_magnitude(pruned, train.x, train.y, 0.5, epochs=3)
    files["pruned-50%"] = compress.quantize_int8(pruned, train.x)
    # the same float model calibrated on other samples: new activation scales, requantized biases
    files["requantized"] = compress.quantize_int8(v1, train.x[::-1], samples=100)
    return files


def decoder_figures() -> tuple[int, int | None]:
    from tinyfleet.device.library import load_library

    lib = load_library()
    lib.tfa_host_delta_state_size.restype = ctypes.c_uint32
    ram = int(lib.tfa_host_delta_state_size())
    flash = None
    if shutil.which("arm-none-eabi-gcc"):
        with tempfile.TemporaryDirectory() as tmp:
            flash = 0
            for src in sorted((ROOT / "agent_firmware" / "core" / "src").glob("delta*.c")):
                obj = Path(tmp) / f"{src.stem}.o"
                subprocess.run(
                    ["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb", "-Os", "-std=c11", "-c",
                     "-I", str(ROOT / "agent_firmware" / "core" / "include"), str(src), "-o", str(obj)],
                    check=True,
                )  # fmt: skip
                size = subprocess.run(
                    ["arm-none-eabi-size", str(obj)], check=True, capture_output=True, text=True
                )
                text, data = size.stdout.splitlines()[1].split()[:2]
                flash += int(text) + int(data)
    return ram, flash


def c_decode_seconds(base: bytes, stream: bytes, size: int) -> float:
    """Wall time of the C decoder (host library, -O2, flash in RAM), 64-byte chunks; checks the output."""
    from tinyfleet.device.library import load_library

    lib = load_library()
    lib.tfa_host_delta_apply.restype = ctypes.c_int
    out = ctypes.create_string_buffer(size)
    args = (base, len(base), stream, len(stream), out, size, 64, 0)
    t0 = time.perf_counter()
    rc = lib.tfa_host_delta_apply(*args)
    seconds = time.perf_counter() - t0
    if rc != 0:
        raise SystemExit(f"the C decoder refused a stream the Python one made (rc {rc})")
    return seconds


def main() -> None:
    rows: list[tuple[str, Path, Path]] = []
    if SHARED_PAIRS.is_dir():
        rows += [
            (f"{b} -> {n}", SHARED_PAIRS / f"{b}.tflite", SHARED_PAIRS / f"{n}.tflite") for b, n in REAL_PAIRS
        ]
    else:
        print("(../shared/models/pairs absent: real pairs skipped)")
    rows += pipeline_pairs(16) + pipeline_pairs(192)
    columns = None
    lines, timing = [], []
    for label, base_path, new_path in rows:
        base, new = base_path.read_bytes(), new_path.read_bytes()
        t0 = time.perf_counter()
        stream = delta.encode(new, base)
        encode_s = time.perf_counter() - t0
        assert delta.decode(stream, base) == new
        decode_s = c_decode_seconds(base, stream, len(new))
        others = all_baselines(base_path, new_path)
        columns = list(others)
        best = min(v for v in others.values() if v is not None)
        cells = " | ".join("n/a" if v is None else str(v) for v in others.values())
        verdict = "yes" if len(stream) < best else "no"
        vs_lzma = 100.0 * (len(stream) / others["lzma (whole new)"] - 1)  # type: ignore[operator]
        ours = f"**{len(stream)}** (v{stream[2]})"
        lines.append(f"| {label} | {len(new)} | {ours} | {cells} | {vs_lzma:+.1f}% | {verdict} |")
        timing.append(f"| {label} | {encode_s:.2f} s | {decode_s * 1e3:.2f} ms |")
    assert columns is not None
    print("| pair | new size | tinyfleet delta (format) | " + " | ".join(columns) + " | vs lzma | fewest? |")
    print("|---|---:|---:|" + "---:|" * len(columns) + "---:|---|")
    print("\n".join(lines))
    print("\n| pair | encode (Python) | decode (C, host -O2) |\n|---|---:|---:|")
    print("\n".join(timing))
    ram, flash = decoder_figures()
    flash_text = f"{flash} bytes" if flash is not None else "n/a (no arm-none-eabi-gcc)"
    print(f"\ndecoder state (RAM): {ram} bytes; decoder code (Cortex-M4, -Os): {flash_text}")


if __name__ == "__main__":
    main()
