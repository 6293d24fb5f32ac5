"""Writing small .tflite models tensor by tensor with the TFLite schema's generated Python classes, for
ops the TensorFlow converter will not emit on its own (SVDF with a state tensor, int16 QUANTIZE pairs)."""

from __future__ import annotations

import importlib.util
import sys
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest


@cache
def schema() -> ModuleType:
    """The TFLite schema's generated Python module from the TensorFlow wheel, without importing TF."""
    spec = importlib.util.find_spec("tensorflow")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("tensorflow")
    path = Path(next(iter(spec.submodule_search_locations))) / "lite" / "python" / "schema_py_generated.py"
    module_spec = importlib.util.spec_from_file_location("tflite_schema_generated", path)
    if module_spec is None or module_spec.loader is None:
        raise ModuleNotFoundError(str(path))
    module = importlib.util.module_from_spec(module_spec)
    sys.modules["tflite_schema_generated"] = module
    module_spec.loader.exec_module(module)
    return module


class ModelBuilder:
    """Tensors and buffers of one subgraph under construction."""

    def __init__(self, s: ModuleType) -> None:
        self.s = s
        self.tensors: list[Any] = []
        self.buffers: list[Any] = [s.BufferT()]  # buffer 0: the empty one, by convention

    def tensor(
        self,
        shape: list[int],
        ttype: int,
        scale: float | None,
        zp: int = 0,
        data: np.ndarray | None = None,
        variable: bool = False,
    ) -> int:
        t = self.s.TensorT()
        t.shape = shape
        t.type = ttype
        t.name = f"t{len(self.tensors)}"
        t.isVariable = variable
        t.buffer = 0
        if data is not None:
            b = self.s.BufferT()
            b.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), np.uint8)
            self.buffers.append(b)
            t.buffer = len(self.buffers) - 1
        if scale is not None:
            q = self.s.QuantizationParametersT()
            q.scale = [float(scale)]
            q.zeroPoint = [int(zp)]
            t.quantization = q
        self.tensors.append(t)
        return len(self.tensors) - 1

    def opcode(self, builtin: int) -> Any:
        """The operator code (version 1) of a builtin operator."""
        code = self.s.OperatorCodeT()
        code.builtinCode = builtin
        code.deprecatedBuiltinCode = builtin
        code.version = 1
        return code

    def finish(
        self, codes: list[Any], operators: list[Any], inputs: list[int], outputs: list[int], about: str
    ) -> bytes:
        """The .tflite bytes of a model of one subgraph: these tensors and buffers, the operators in order."""
        sg = self.s.SubGraphT()
        sg.tensors = self.tensors
        sg.inputs = inputs
        sg.outputs = outputs
        sg.operators = operators
        model = self.s.ModelT()
        model.version = 3
        model.operatorCodes = codes
        model.subgraphs = [sg]
        model.buffers = self.buffers
        model.description = about
        return pack(model)


def pack(model: Any) -> bytes:
    """A schema ModelT as .tflite bytes."""
    import flatbuffers

    builder = flatbuffers.Builder(4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def require_builder() -> None:
    """Skips the calling test without tflite-micro's interpreter (the oracle) or the schema module."""
    pytest.importorskip("tflite_micro.python.tflite_micro.runtime")
    try:
        schema()
    except (ModuleNotFoundError, FileNotFoundError):
        pytest.skip("the TFLite schema module (TensorFlow wheel) is not installed")
