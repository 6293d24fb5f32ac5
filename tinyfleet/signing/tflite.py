"""Validate a .tflite model without TensorFlow and describe it (ops, inputs, outputs, arena estimate).

Reads the TFLite flatbuffer schema (version 3) directly with a bounds-checked reader: Model {version,
operator_codes, subgraphs, description, buffers}, SubGraph {tensors, inputs, outputs, operators},
Tensor {shape, type, buffer, name, .., is_variable}, OperatorCode {deprecated_builtin_code,
custom_code, version, builtin_code}. Anything malformed raises InvalidModelError.
"""

from __future__ import annotations

from dataclasses import dataclass

from tinyfleet.signing._flatbuf import FlatBuffer, Table
from tinyfleet.signing.errors import InvalidModelError

FILE_IDENTIFIER = b"TFL3"
SCHEMA_VERSION = 3
ARENA_ALIGNMENT = 16

# TensorType enum of the TFLite schema: name and element size in bytes (None: no fixed size).
TENSOR_TYPES: dict[int, tuple[str, int | None]] = {
    0: ("float32", 4),
    1: ("float16", 2),
    2: ("int32", 4),
    3: ("uint8", 1),
    4: ("int64", 8),
    5: ("string", None),
    6: ("bool", 1),
    7: ("int16", 2),
    8: ("complex64", 8),
    9: ("int8", 1),
    10: ("float64", 8),
    11: ("complex128", 16),
    12: ("uint64", 8),
    13: ("resource", None),
    14: ("variant", None),
    15: ("uint32", 4),
    16: ("uint16", 2),
    17: ("int4", 1),  # packed two per byte; one byte each is a safe upper bound
    18: ("bfloat16", 2),
    19: ("int2", 1),  # packed; one byte each is an upper bound
    20: ("uint4", 1),
}

# BuiltinOperator enum of the TFLite schema, in value order from 0.
_BUILTIN_NAMES = """
ADD AVERAGE_POOL_2D CONCATENATION CONV_2D DEPTHWISE_CONV_2D DEPTH_TO_SPACE DEQUANTIZE EMBEDDING_LOOKUP
FLOOR FULLY_CONNECTED HASHTABLE_LOOKUP L2_NORMALIZATION L2_POOL_2D LOCAL_RESPONSE_NORMALIZATION LOGISTIC
LSH_PROJECTION LSTM MAX_POOL_2D MUL RELU RELU_N1_TO_1 RELU6 RESHAPE RESIZE_BILINEAR RNN SOFTMAX
SPACE_TO_DEPTH SVDF TANH CONCAT_EMBEDDINGS SKIP_GRAM CALL CUSTOM EMBEDDING_LOOKUP_SPARSE PAD
UNIDIRECTIONAL_SEQUENCE_RNN GATHER BATCH_TO_SPACE_ND SPACE_TO_BATCH_ND TRANSPOSE MEAN SUB DIV SQUEEZE
UNIDIRECTIONAL_SEQUENCE_LSTM STRIDED_SLICE BIDIRECTIONAL_SEQUENCE_RNN EXP TOPK_V2 SPLIT LOG_SOFTMAX
DELEGATE BIDIRECTIONAL_SEQUENCE_LSTM CAST PRELU MAXIMUM ARG_MAX MINIMUM LESS NEG PADV2 GREATER
GREATER_EQUAL LESS_EQUAL SELECT SLICE SIN TRANSPOSE_CONV SPARSE_TO_DENSE TILE EXPAND_DIMS EQUAL
NOT_EQUAL LOG SUM SQRT RSQRT SHAPE POW ARG_MIN FAKE_QUANT REDUCE_PROD REDUCE_MAX PACK LOGICAL_OR ONE_HOT
LOGICAL_AND LOGICAL_NOT UNPACK REDUCE_MIN FLOOR_DIV REDUCE_ANY SQUARE ZEROS_LIKE FILL FLOOR_MOD RANGE
RESIZE_NEAREST_NEIGHBOR LEAKY_RELU SQUARED_DIFFERENCE MIRROR_PAD ABS SPLIT_V UNIQUE CEIL REVERSE_V2
ADD_N GATHER_ND COS WHERE RANK ELU REVERSE_SEQUENCE MATRIX_DIAG QUANTIZE MATRIX_SET_DIAG ROUND
HARD_SWISH IF WHILE NON_MAX_SUPPRESSION_V4 NON_MAX_SUPPRESSION_V5 SCATTER_ND SELECT_V2 DENSIFY
SEGMENT_SUM BATCH_MATMUL PLACEHOLDER_FOR_GREATER_OP_CODES CUMSUM CALL_ONCE BROADCAST_TO RFFT2D CONV_3D
IMAG REAL COMPLEX_ABS HASHTABLE HASHTABLE_FIND HASHTABLE_IMPORT HASHTABLE_SIZE REDUCE_ALL
CONV_3D_TRANSPOSE VAR_HANDLE READ_VARIABLE ASSIGN_VARIABLE BROADCAST_ARGS RANDOM_STANDARD_NORMAL
BUCKETIZE RANDOM_UNIFORM MULTINOMIAL GELU DYNAMIC_UPDATE_SLICE RELU_0_TO_1 UNSORTED_SEGMENT_PROD
UNSORTED_SEGMENT_MAX UNSORTED_SEGMENT_SUM ATAN2 UNSORTED_SEGMENT_MIN SIGN BITCAST BITWISE_XOR
RIGHT_SHIFT
""".split()  # noqa: SIM905 (a table is easier to check against the schema)


def builtin_op_name(code: int) -> str:
    return _BUILTIN_NAMES[code] if 0 <= code < len(_BUILTIN_NAMES) else f"BUILTIN_{code}"


@dataclass(frozen=True)
class ModelTensor:
    index: int
    name: str
    dtype: str
    shape: tuple[int, ...]
    buffer: int
    is_variable: bool

    @property
    def element_size(self) -> int | None:
        for name, size in TENSOR_TYPES.values():
            if name == self.dtype:
                return size
        return None


@dataclass(frozen=True)
class SubgraphInfo:
    name: str
    tensors: tuple[ModelTensor, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    operator_count: int


@dataclass(frozen=True)
class ModelInfo:
    size: int
    schema_version: int
    description: str
    operators: tuple[str, ...]  # operator codes used, in the model's table order
    subgraphs: tuple[SubgraphInfo, ...]
    constant_buffers: frozenset[int]  # buffer indexes that hold data (weights, constants)

    @property
    def inputs(self) -> tuple[ModelTensor, ...]:
        g = self.subgraphs[0]
        return tuple(g.tensors[i] for i in g.inputs)

    @property
    def outputs(self) -> tuple[ModelTensor, ...]:
        g = self.subgraphs[0]
        return tuple(g.tensors[i] for i in g.outputs)


def _operator_name(code: Table) -> str:
    # Newer files keep the code in builtin_code (int32); older ones in the deprecated int8 field.
    deprecated = code.u8(0)
    if deprecated >= 128:
        deprecated -= 256
    builtin = max(deprecated, code.i32(3))
    if builtin == 32:  # CUSTOM
        custom = code.string(1, "custom op name")
        return f"CUSTOM:{custom}" if custom else "CUSTOM"
    return builtin_op_name(builtin)


def _tensor(t: Table, index: int, buffer_count: int) -> ModelTensor:
    type_code = t.u8(1)
    if type_code not in TENSOR_TYPES:
        raise InvalidModelError(f"tensor {index} has unknown type code {type_code}")
    buffer = t.u32(2)
    if buffer >= max(buffer_count, 1):
        raise InvalidModelError(f"tensor {index} refers to buffer {buffer} of {buffer_count}")
    return ModelTensor(
        index=index,
        name=t.string(3, "tensor name") or "",
        dtype=TENSOR_TYPES[type_code][0],
        shape=tuple(t.int_vector(0, "tensor shape")),
        buffer=buffer,
        is_variable=bool(t.u8(5)),
    )


def _subgraph(g: Table, index: int, buffer_count: int, opcode_count: int) -> SubgraphInfo:
    tensors = tuple(_tensor(t, i, buffer_count) for i, t in enumerate(g.table_vector(0, "tensors")))
    inputs = tuple(g.int_vector(1, "subgraph inputs"))
    outputs = tuple(g.int_vector(2, "subgraph outputs"))
    for label, indexes in (("input", inputs), ("output", outputs)):
        for i in indexes:
            if not 0 <= i < len(tensors):
                raise InvalidModelError(f"subgraph {index}: {label} tensor {i} of {len(tensors)}")
    operators = g.table_vector(3, "operators")
    for n, op in enumerate(operators):
        if op.u32(0) >= opcode_count:
            raise InvalidModelError(
                f"subgraph {index}: operator {n} uses opcode {op.u32(0)} of {opcode_count}"
            )
        for t in op.int_vector(1, "operator inputs") + op.int_vector(2, "operator outputs"):
            if not -1 <= t < len(tensors):  # -1 marks an omitted optional input
                raise InvalidModelError(f"subgraph {index}: operator {n} uses tensor {t} of {len(tensors)}")
    return SubgraphInfo(
        name=g.string(4, "subgraph name") or "",
        tensors=tensors,
        inputs=inputs,
        outputs=outputs,
        operator_count=len(operators),
    )


def parse_model(data: bytes) -> ModelInfo:
    """Validate `data` as a TFLite flatbuffer and describe it; InvalidModelError if it is not one."""
    data = bytes(data)
    if len(data) < 8:
        raise InvalidModelError(f"{len(data)} bytes is too short for a .tflite model")
    if data[4:8] != FILE_IDENTIFIER:
        raise InvalidModelError(f"file identifier is {data[4:8]!r}, not 'TFL3': not a .tflite model")
    model = FlatBuffer(data).root()
    version = model.u32(0)
    if version != SCHEMA_VERSION:
        raise InvalidModelError(
            f"TFLite schema version {version}; only version {SCHEMA_VERSION} is supported"
        )
    opcodes = model.table_vector(1, "operator codes")
    buffers = model.table_vector(4, "buffers")
    constant = set()
    for i, b in enumerate(buffers):
        data_vec = b.vector(0, 1, f"buffer {i} data")
        if (data_vec is not None and data_vec[1] > 0) or b.u64(1) > 1:  # inline data, or stored after
            constant.add(i)
    graphs = model.table_vector(2, "subgraphs")
    if not graphs:
        raise InvalidModelError("the model has no subgraphs")
    subgraphs = tuple(_subgraph(g, i, len(buffers), len(opcodes)) for i, g in enumerate(graphs))
    return ModelInfo(
        size=len(data),
        schema_version=version,
        description=model.string(3, "description") or "",
        operators=tuple(_operator_name(c) for c in opcodes),
        subgraphs=subgraphs,
        constant_buffers=frozenset(constant),
    )


def _align(n: int) -> int:
    return (n + ARENA_ALIGNMENT - 1) // ARENA_ALIGNMENT * ARENA_ALIGNMENT


def estimate_arena_bytes(model: bytes | ModelInfo) -> int:
    """A safe upper bound on the tensor arena: every non-constant tensor of every subgraph, each
    rounded up to 16 bytes, with no memory reuse. The C engine's planner gives the exact figure."""
    info = model if isinstance(model, ModelInfo) else parse_model(model)
    total = 0
    for graph in info.subgraphs:
        for t in graph.tensors:
            if t.buffer in info.constant_buffers and not t.is_variable:
                continue
            size = t.element_size
            if size is None:
                raise InvalidModelError(f"tensor {t.index} ({t.name}) has type {t.dtype} of no fixed size")
            for dim in t.shape:
                if dim < 0:
                    raise InvalidModelError(f"tensor {t.index} ({t.name}) has a dynamic shape {t.shape}")
                size *= dim
            total += _align(size)
    return total
