"""The demo's releases: three signed packages of real `.tflite` models, made with the signing API.

v1 and v2 are successive real versions of TFLite Micro's hello_world model (`../shared/models/pairs`),
each with a self-test whose expected output digest comes from the reference TFLite Micro interpreter;
the device's runtime recomputes it on trial. v3 is the "bad release": an honest, validly signed package
whose self-test expectation was taken from another model's output (the kind of mix-up a release script
makes), so every device's trial self-test fails and reverts. When the shared models are absent, the
signing test vector model is used for all three with different metadata (then devices that already run
that model have nothing to download: desired states are keyed by model digest).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from signing.package import build_package
from signing.selftest import expected_output_sha256

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_PAIRS = REPO_ROOT.parent / "shared" / "models" / "pairs"
VECTOR_MODEL = REPO_ROOT / "tests" / "vectors" / "model.tflite"
MODEL_NAME = "hello-world"
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


def model_files() -> tuple[list[bytes], str]:
    """Model bytes for v1, v2, v3 and where they came from."""
    names = ["hello_world_int8.1.tflite", "hello_world_int8.2.tflite", "hello_world_int8.0.tflite"]
    paths = [SHARED_PAIRS / n for n in names]
    if all(p.is_file() for p in paths):
        return [p.read_bytes() for p in paths], str(SHARED_PAIRS)
    if not VECTOR_MODEL.is_file():
        raise FileNotFoundError(f"no demo model: neither {SHARED_PAIRS} nor {VECTOR_MODEL} exists")
    data = VECTOR_MODEL.read_bytes()
    return [data, data, data], str(VECTOR_MODEL)


def build_releases(key: Ed25519PrivateKey, hardware_class: int, with_selftest: bool = True) -> list[Release]:
    """Sign v1, v2 (good) and v3 (self-test expectation that the model cannot meet)."""
    models, _source = model_files()
    releases = []
    specs = [("1.0.0", "first release"), ("2.0.0", "retrained model"), ("3.0.0", "bad release")]
    for index, ((version, label), model) in enumerate(zip(specs, models, strict=True)):
        bad = index == 2
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
            sequence=index + 1,
            security_counter=1,
            hardware_class=hardware_class,
            min_runtime_version=MIN_RUNTIME,
            selftest_seed=seed,
            selftest_output_sha256=expected,
        )
        releases.append(Release(version, label, model, package))
    return releases
