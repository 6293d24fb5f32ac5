"""The engine's operator set has one source, the table in agent_firmware/core/engine/ops.h; the Python
list devices report (`ENGINE_BUILTIN_OPS`) and the schema names Python uses are checked against it."""

from __future__ import annotations

import re

from tests.support.paths import REPO
from tinyfleet.device.engine import op_name, supported_ops
from tinyfleet.device.engine_check import ENGINE_BUILTIN_OPS
from tinyfleet.signing.tflite import builtin_op_name


def test_python_op_list_is_the_c_table() -> None:
    assert [code for code, _ in supported_ops()] == list(ENGINE_BUILTIN_OPS)


def test_c_names_are_the_schema_names() -> None:
    for code, name in supported_ops():
        assert name == builtin_op_name(code) == op_name(code)


def test_no_other_c_file_spells_the_op_set() -> None:
    # Builtin codes appear as numbers only in ops.h; everything else uses TFA_OP_<NAME> or the table.
    engine = REPO / "agent_firmware/core/engine"
    numbered = re.compile(r"TFA_OP_\w+\s*=\s*\d+|case\s+TFA_OP_")
    offenders = [p.name for p in sorted(engine.glob("*.[ch]")) if numbered.search(p.read_text())]
    assert offenders == []
