"""The demo's releases: three signed packages of real `.tflite` models, made with the signing API.

The models come from the compression pipeline (`tinyfleet/ml`): a bearing-vibration fault classifier
trained and int8-quantized here on the synthetic accelerometer data set. v1 is the first training; v2 is
retrained on more windows and magnitude-pruned to 50%; v3 is a third training whose release carries a
self-test expectation taken from v2's output (the kind of mix-up a release script makes): an honest,
validly signed package whose trial self-test fails on every device, which reverts. v4 is silently
wrong: the same pipeline trained on shuffled labels (a broken data join), so it runs, passes its own
(correct) self-test and confirms everywhere, but its predictions carry no information: only the canary
gate's telemetry comparison can catch it. Self-test digests come from the reference TFLite Micro
interpreter; the device's runtime recomputes them on trial. Training takes seconds; the .tflite files
are cached under `build/cache/demo-models/<CACHE_KEY>/` (change CACHE_KEY when a recipe changes).
Without TensorFlow, the demo falls back to TFLite Micro's hello_world pairs (`../shared/models/pairs`),
then to the signing test vector model, for v1 to v3 only: a silently wrong hello_world would need a
vibration-shaped model to show on the gate's class metrics.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tinyfleet.signing.package import build_package
from tinyfleet.signing.selftest import expected_output_sha256

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_PAIRS = REPO_ROOT.parent / "shared" / "models" / "pairs"
VECTOR_MODEL = REPO_ROOT / "tests" / "vectors" / "model.tflite"
MODEL_NAME = "bearing-vibration"
CACHE_DIR = REPO_ROOT / "build" / "cache" / "demo-models"
CACHE_KEY = "vibration-v2"
# compress_task arguments for v1 to v4 (see the module docstring); `shuffle_labels` is ours, not
# compress_task's: the seed of the permutation applied to the training labels.
PIPELINE_RECIPES: tuple[dict[str, Any], ...] = (
    {"samples": 2000, "epochs": 10, "seed": 0},
    {"samples": 3000, "epochs": 10, "seed": 0, "prune_to": 0.5},
    {"samples": 2000, "epochs": 10, "seed": 2},
    {"samples": 2000, "epochs": 10, "seed": 3, "shuffle_labels": 7},
)
SELFTEST_BAD, SILENTLY_WRONG = 2, 3  # indexes into the releases
SELFTEST_SEED = 0x5EED1234
MIN_RUNTIME = "0.1.0"


@dataclass(frozen=True)
class Release:
    version: str
    label: str  # what the demo tells the audience about it
    model: bytes
    package: bytes

    @property
    def model_sha256(self) -> str:
        return hashlib.sha256(self.model).hexdigest()


def pipeline_available() -> bool:
    return importlib.util.find_spec("tensorflow") is not None


def _train(recipe: dict[str, Any]) -> bytes:
    from tinyfleet.ml.pipeline import compress_task

    recipe = dict(recipe)
    shuffle = recipe.pop("shuffle_labels", None)
    if shuffle is None:
        return compress_task("vibration", **recipe).tflite
    import numpy as np

    from tinyfleet.ml import architectures, datasets
    from tinyfleet.ml.pipeline import compress_model, train

    # compress_task's steps, with the training labels permuted: the model learns no more than the
    # class frequencies, and its int8 calibration (on the same inputs) is as good as v1's.
    data = datasets.load("vibration", samples=recipe["samples"], seed=recipe["seed"])
    train_data, test_data = data.split(seed=recipe["seed"])
    shuffled = np.random.default_rng(shuffle).permutation(train_data.y)
    train_data = datasets.Dataset(train_data.name, train_data.x, shuffled, train_data.class_names)
    kind = architectures.default_kind("vibration")
    model = architectures.build(kind, data.input_shape, len(data.class_names), seed=recipe["seed"])
    train(model, train_data, recipe["epochs"])
    return compress_model(model, train_data, test_data, epochs=max(2, recipe["epochs"] // 3)).tflite


def pipeline_models(cache_dir: Path = CACHE_DIR, key: str = CACHE_KEY) -> list[bytes]:
    """v1 to v4 from the compression pipeline, trained once and then read from the cache."""
    folder = cache_dir / key
    paths = [folder / f"v{i + 1}.tflite" for i in range(len(PIPELINE_RECIPES))]
    if not all(p.is_file() for p in paths):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ logs off the demo
        folder.mkdir(parents=True, exist_ok=True)
        for path, recipe in zip(paths, PIPELINE_RECIPES, strict=True):
            if path.is_file():
                continue
            with contextlib.redirect_stdout(io.StringIO()):  # Keras prints its export signatures
                tflite = _train(recipe)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")  # concurrent builders never see half a file
            tmp.write_bytes(tflite)
            tmp.replace(path)
    return [p.read_bytes() for p in paths]


def model_files() -> tuple[list[bytes], str]:
    """Model bytes for v1 to v4 (v1 to v3 without TensorFlow) and where they came from."""
    if pipeline_available():
        return pipeline_models(), f"the compression pipeline (bearing vibration), cached in {CACHE_DIR}"
    names = ["hello_world_int8.1.tflite", "hello_world_int8.2.tflite", "hello_world_int8.0.tflite"]
    paths = [SHARED_PAIRS / n for n in names]
    if all(p.is_file() for p in paths):
        return [p.read_bytes() for p in paths], f"{SHARED_PAIRS} (TensorFlow unavailable)"
    if not VECTOR_MODEL.is_file():
        raise FileNotFoundError(f"no demo model: neither {SHARED_PAIRS} nor {VECTOR_MODEL} exists")
    data = VECTOR_MODEL.read_bytes()
    return [data, data, data], f"{VECTOR_MODEL} (TensorFlow unavailable)"


def build_releases(key: Ed25519PrivateKey, hardware_class: int, with_selftest: bool = True) -> list[Release]:
    """Sign v1, v2 (good), v3 (self-test expectation that the model cannot meet) and, with the pipeline,
    v4 (trained on shuffled labels, self-test right)."""
    models, _source = model_files()
    releases = []
    specs = [
        ("1.0.0", "first release"),
        ("2.0.0", "retrained, pruned 50%"),
        ("3.0.0", "bad release"),
        ("4.0.0", "silently wrong: shuffled labels"),
    ]
    for index, ((version, label), model) in enumerate(zip(specs[: len(models)], models, strict=True)):
        bad = index == SELFTEST_BAD
        seed = SELFTEST_SEED if (with_selftest or bad) else 0
        expected: bytes | None = None
        if seed:
            # The bad release carries v2's expected output: the device computes v3's and they differ.
            expected = expected_output_sha256(models[1] if bad else model, seed)
        package = build_package(
            model,
            key,
            name=MODEL_NAME,
            version=version,
            # v3 takes the last sequence: the demo uploads v4 before it as a .tflite, which the server
            # numbers next after v2 (see demo._upload's order).
            sequence=len(specs) + 1 if bad else index + 1,
            security_counter=1,
            hardware_class=hardware_class,
            min_runtime_version=MIN_RUNTIME,
            selftest_seed=seed,
            selftest_output_sha256=expected,
        )
        releases.append(Release(version, label, model, package))
    return releases
