"""Will the device engine run this model? One check, one wording, for the server's upload and for
`tinyfleet sign build` (which gets it injected by tinyfleet/cli.py: signing may not import device)."""

from __future__ import annotations

from tinyfleet.device.engine import Engine, EngineError
from tinyfleet.device.library import LibraryError, load_library

# Builtin operator codes the C engine runs: the Python copy of the table in agent_firmware/core/engine/ops.h,
# which devices report as their `ops` capability. tests/device/test_engine_ops.py checks it against the
# table the C library exports (tinyfleet.device.engine.supported_ops).
ENGINE_BUILTIN_OPS: tuple[int, ...] = (
    *(0, 1, 2, 3, 4, 6, 9, 14, 17, 18, 22, 25, 27, 28, 34, 40, 43, 45, 49, 67, 97, 114, 117),
)
REFUSAL_PREFIX = "the device engine refuses this model"


class EngineUnavailable(Exception):
    """The host library (which holds the engine) cannot be built or loaded here."""


class EngineRefused(Exception):
    """The engine cannot run the model; str() is the one-line message users see."""

    def __init__(self, error: EngineError) -> None:
        super().__init__(f"{REFUSAL_PREFIX}: {error}")
        self.code = error.code
        self.op_name = error.op_name


def load_engine(model: bytes) -> Engine:
    """The engine over `model`; EngineRefused when it cannot run it, EngineUnavailable without a library."""
    try:
        load_library()
    except LibraryError as exc:
        raise EngineUnavailable(f"the device engine is not available: {' '.join(str(exc).split())}") from None
    try:
        return Engine(model)
    except EngineError as exc:
        raise EngineRefused(exc) from None


def refusal(model: bytes) -> str | None:
    """One line saying why the model cannot be signed for devices, or None when the engine runs it."""
    try:
        load_engine(model)
    except (EngineUnavailable, EngineRefused) as exc:
        return str(exc)
    return None
