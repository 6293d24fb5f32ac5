"""Run an uploaded .tflite through the real C engine (the one devices run) before packaging it: a model
with an op the engine lacks is refused at upload with the op named, instead of failing on every device's
trial. The engine also gives the exact tensor arena and the self-test the manifest carries."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from tinyfleet.server.services.errors import Invalid
from tinyfleet.signing.errors import SigningError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineFacts:
    arena_bytes: int
    selftest_seed: int
    selftest_output_sha256: bytes


def selftest_seed_for(model: bytes) -> int:
    """A non-zero seed derived from the model, so rebuilding the same model gives the same manifest."""
    return int.from_bytes(hashlib.sha256(model).digest()[:4], "little") or 1


def check_model(model: bytes) -> EngineFacts | None:
    """Facts from the engine, Invalid naming the problem if it refuses the model, or None when the host
    library cannot be built or loaded (the upload then keeps the signing library's arena estimate and no
    self-test)."""
    from tinyfleet.device.engine import Engine, EngineError
    from tinyfleet.device.library import LibraryError, load_library
    from tinyfleet.signing import selftest

    try:
        load_library()
    except LibraryError as exc:
        log.warning("model not checked by the C engine: %s", exc)
        return None
    try:
        engine = Engine(model)
    except EngineError as exc:
        raise Invalid(f"the device engine refuses this model: {exc}") from None
    seed = selftest_seed_for(model)
    if not selftest.reference_available():  # the engine is bit-exact with the reference interpreter
        return EngineFacts(engine.arena_used, seed, engine.selftest_digest(seed))
    try:
        expected = selftest.expected_output_sha256(model, seed)
    except SigningError as exc:
        raise Invalid(f"the reference interpreter cannot run this model: {exc}") from None
    return EngineFacts(engine.arena_used, seed, expected)
