"""Bytes on the wire per model update: the tinyfleet delta against established patch tools.

Pairs: the real successive model versions in ../shared/models/pairs, and pairs the compression pipeline
makes here (retrained from scratch, last layer fine-tuned, pruned). Prints a Markdown table for
docs/BENCHMARKS.md, plus the decoder's RAM and flash size.

    .venv/bin/python bench/delta.py
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import sys
import tempfile
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


def pipeline_pairs(workdir: Path) -> list[tuple[str, Path, Path]]:
    """v1 of the vibration classifier, then three kinds of update a team ships."""
    import keras

    from tinyfleet.ml import architectures, compress, datasets, pipeline

    data = datasets.load("vibration", samples=1500, seed=0)
    train, _ = data.split(seed=0)
    classes = len(data.class_names)

    def build(seed: int) -> object:
        model = architectures.build("dense", data.input_shape, classes, width=16, seed=seed)
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
    paths = {}
    for name, blob in files.items():
        paths[name] = workdir / f"vibration_{name}.tflite"
        paths[name].write_bytes(blob)
    return [
        (f"vibration v1 -> {name}", paths["v1"], paths[name])
        for name in ("retrained", "last-layer", "pruned-50%")
    ]


def decoder_figures() -> tuple[int, int | None]:
    from tinyfleet.device.library import load_library

    lib = load_library()
    lib.tfa_host_delta_state_size.restype = ctypes.c_uint32
    ram = int(lib.tfa_host_delta_state_size())
    flash = None
    if shutil.which("arm-none-eabi-gcc"):
        with tempfile.TemporaryDirectory() as tmp:
            obj = Path(tmp) / "delta.o"
            subprocess.run(
                ["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb", "-Os", "-std=c11", "-c",
                 "-I", str(ROOT / "agent_firmware" / "core" / "include"),
                 str(ROOT / "agent_firmware" / "core" / "src" / "delta.c"), "-o", str(obj)],
                check=True,
            )  # fmt: skip
            size = subprocess.run(
                ["arm-none-eabi-size", str(obj)], check=True, capture_output=True, text=True
            )
            text, data = size.stdout.splitlines()[1].split()[:2]
            flash = int(text) + int(data)
    return ram, flash


def main() -> None:
    rows: list[tuple[str, Path, Path]] = []
    if SHARED_PAIRS.is_dir():
        rows += [
            (f"{b} -> {n}", SHARED_PAIRS / f"{b}.tflite", SHARED_PAIRS / f"{n}.tflite") for b, n in REAL_PAIRS
        ]
    else:
        print("(../shared/models/pairs absent: real pairs skipped)")
    with tempfile.TemporaryDirectory() as tmp:
        rows += pipeline_pairs(Path(tmp))
        columns = None
        lines = []
        for label, base_path, new_path in rows:
            base, new = base_path.read_bytes(), new_path.read_bytes()
            ours = len(delta.encode(new, base))
            assert delta.decode(delta.encode(new, base), base) == new
            others = all_baselines(base_path, new_path)
            columns = list(others)
            best = min(v for v in others.values() if v is not None)
            cells = " | ".join("n/a" if v is None else str(v) for v in others.values())
            verdict = "yes" if ours < best else "no"
            lines.append(f"| {label} | {len(new)} | **{ours}** | {cells} | {verdict} |")
    assert columns is not None
    print("| pair | new size | tinyfleet delta | " + " | ".join(columns) + " | fewest? |")
    print("|---|---:|---:|" + "---:|" * len(columns) + "---|")
    print("\n".join(lines))
    ram, flash = decoder_figures()
    flash_text = f"{flash} bytes" if flash is not None else "n/a (no arm-none-eabi-gcc)"
    print(f"\ndecoder state (RAM): {ram} bytes; decoder code (Cortex-M4, -Os): {flash_text}")


if __name__ == "__main__":
    main()
