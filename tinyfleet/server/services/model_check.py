"""Run an uploaded .tflite through the real C engine (the one devices run) before packaging it: a model
with an op the engine lacks is refused at upload with the op named, instead of failing on every device's
trial. The engine also gives the exact tensor arena and the self-test the manifest carries."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from tinyfleet.server.services.errors import Invalid

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
    library is not built (the upload then keeps the signing library's arena estimate and no self-test)."""
    from tinyfleet.device import engine as eng

    try:
        eng.load_library()
    except (FileNotFoundError, OSError) as exc:
        log.warning("model not checked by the C engine: %s", exc)
        return None
    try:
        engine = eng.Engine(model)
    except eng.EngineError as exc:
        raise Invalid(f"the device engine refuses this model: {exc}") from None
    seed = selftest_seed_for(model)
    try:
        expected = eng.selftest_output_sha256(model, seed)
    except ImportError:
        expected = engine.selftest_digest(seed)  # no reference interpreter: the engine is bit-exact with it
    except Exception as exc:  # the reference interpreter reports model problems as assorted errors
        detail = " ".join(str(exc).split())
        raise Invalid(f"the reference interpreter cannot run this model: {detail}") from None
    return EngineFacts(engine.arena_used, seed, expected)
