"""ONNX intake: models built here with onnx.helper become int8 .tflite files that keep the ONNX model's
answers, run bit-exact on the device engine, and unusable ONNX files get one clear line."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("tensorflow")
pytest.importorskip("tflite_micro")

from onnx import helper

from tests.support import onnx_models
from tinyfleet.ml import onnx_import, onnx_pipeline, validate
from tinyfleet.ml.onnx_import import OnnxImportError

TF_NOISE = re.compile(r"Traceback|tensorflow|absl|^[WIE]0000", re.I | re.M)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    directory = tmp_path_factory.mktemp("onnx")
    conv, cx, cy = onnx_models.conv_net()
    mlp, mx, my = onnx_models.mlp()
    return {
        "conv": onnx_models.save(conv, cx, cy, directory, "conv"),
        "mlp": onnx_models.save(mlp, mx, my, directory, "mlp"),
    }


def _engine_check(tflite: bytes) -> validate.Validation:
    check = validate.validate(tflite)
    if not check.engine_checked and check.engine_error.startswith("not available"):
        pytest.skip(f"the device engine library is {check.engine_error}")
    assert check.engine_checked, check.summary()
    return check


@pytest.mark.slow  # converts with TensorFlow: seconds each
@pytest.mark.parametrize("name", ["conv", "mlp"])
def test_int8_model_keeps_the_onnx_answers_and_runs_bit_exact(
    built: dict[str, tuple[Path, Path]], name: str
) -> None:
    model_path, data_path = built[name]
    result = onnx_pipeline.compress_onnx(model_path, data_path)
    assert result.tflite[4:8] == b"TFL3"
    notes = result.notes
    assert notes["runner"] == "onnxruntime"
    # The translated float model computes what onnxruntime computes (layout, folded BN, permuted Gemm).
    assert notes["float_max_abs_diff"] < 1e-4
    assert result.before.accuracy > 0.75, "the fixture model should classify its data"
    assert notes["top1_agreement"] >= 0.9
    assert result.before.accuracy - result.after.accuracy <= 0.05
    assert notes["int8_max_abs_diff"] < 0.25  # softmax outputs in [0, 1], int8 steps of 1/256
    assert result.after.size_bytes < 20_000 and 0 < result.after.arena_bytes <= result.before.arena_bytes
    check = _engine_check(result.tflite)
    assert check.engine_bit_exact, check.summary()
    assert check.arena_bytes > 0


@pytest.mark.slow
def test_every_supported_op_translates_exactly_and_runs_on_the_engine(tmp_path: Path) -> None:
    """The op zoo (random weights) plus the two classifiers use every op of the supported set."""
    zoo, x = onnx_models.op_zoo()
    models = (zoo, onnx_models.conv_net()[0], onnx_models.mlp(samples=200)[0])
    used = {n.op_type for m in models for n in m.graph.node}
    assert used == set(onnx_import.SUPPORTED_OPS), set(onnx_import.SUPPORTED_OPS) ^ used
    model_path, data_path = onnx_models.save(zoo, x, None, tmp_path, "zoo")
    result = onnx_pipeline.compress_onnx(model_path, data_path)
    assert result.notes["float_max_abs_diff"] < 1e-4  # strided/explicit pads, NCHW constants, permuted MatMul
    assert result.notes["labels"] == "the ONNX model's top class"
    assert result.notes["int8_max_abs_diff"] < 0.15 and result.notes["top1_agreement"] >= 0.9
    check = _engine_check(result.tflite)
    assert check.engine_bit_exact, check.summary()


@pytest.mark.slow
def test_conv_input_is_nhwc_and_reaches_the_same_class(built: dict[str, tuple[Path, Path]]) -> None:
    """One digit through onnxruntime (NCHW) and through the int8 model (NHWC): same top class."""
    model_path, data_path = built["conv"]
    result = onnx_pipeline.compress_onnx(model_path, data_path)
    x, _ = onnx_pipeline.load_data(data_path, (1, 8, 8))
    sample = x[:40]
    reference = onnx_pipeline.onnx_outputs(model_path.read_bytes(), sample)
    assert reference is not None
    from tinyfleet.ml import evaluate

    int8 = evaluate.tflm_predict(result.tflite, onnx_import.to_nhwc(sample))
    assert (int8.argmax(axis=1) == reference.argmax(axis=1)).mean() >= 0.9
    wrong_layout = evaluate.tflm_predict(result.tflite, np.transpose(sample, (0, 3, 2, 1)))
    assert not np.array_equal(wrong_layout, int8), "the layout must matter for this model"


def _unsupported_model() -> Any:
    base, _, _ = onnx_models.mlp(samples=200)
    lstm = helper.make_node("LSTM", ["probs", "w", "r"], ["seq"], name="rnn", hidden_size=4)
    custom = helper.make_node("FancyGate", ["probs"], ["gated"], name="gate", domain="com.acme")
    tanh = helper.make_node("Tanh", ["probs"], ["t"], name="squash")
    return onnx_models.with_node(onnx_models.with_node(onnx_models.with_node(base, lstm), custom), tanh)


def test_unsupported_ops_are_all_named_in_one_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.onnx"
    path.write_bytes(_unsupported_model().SerializeToString())
    with pytest.raises(OnnxImportError) as err:
        onnx_import.load(path)
    message = str(err.value)
    assert "\n" not in message
    assert "LSTM (node 'rnn'" in message
    assert "FancyGate [domain com.acme] (node 'gate')" in message
    assert "Tanh (node 'squash': the device engine has no TANH kernel)" in message
    assert "Gemm" not in message.split("supported:")[0], "supported ops are not reported as unsupported"


def test_malformed_and_mismatched_inputs_get_one_clear_line(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07this is not protobuf \xff\xfe" * 10)
    with pytest.raises(OnnxImportError, match=r"^garbage.onnx is not a valid ONNX model: "):
        onnx_import.load(garbage)
    model, x, y = onnx_models.mlp(samples=200)
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(model.SerializeToString()[:300])
    with pytest.raises(OnnxImportError, match=r"truncated\.onnx is not a valid ONNX model"):
        onnx_import.load(truncated)
    with pytest.raises(OnnxImportError, match=r"cannot read missing\.onnx"):
        onnx_import.load(tmp_path / "missing.onnx")
    good, _ = onnx_models.save(model, x, y, tmp_path, "mlp")
    bad_data = tmp_path / "wrong.npz"
    np.savez(bad_data, x=np.zeros((10, 7), np.float32))
    with pytest.raises(OnnxImportError, match=r"x has rows of shape \[7\], the model takes \[32\]"):
        onnx_pipeline.compress_onnx(good, bad_data)
    no_x = tmp_path / "nox.npz"
    np.savez(no_x, features=np.zeros((10, 32), np.float32))
    with pytest.raises(OnnxImportError, match="must hold an array named 'x'"):
        onnx_pipeline.compress_onnx(good, no_x)


@pytest.mark.slow  # builds Keras layers
def test_translation_refuses_what_it_cannot_keep_exact(tmp_path: Path) -> None:
    """An op in the supported set but with settings the device cannot follow: named with its node."""
    model, _, _ = onnx_models.mlp(samples=200)
    clip = helper.make_node("Clip", ["probs"], ["clipped"], name="clip_odd")
    lo = onnx_models._init("lo", np.array(-1.0, np.float32))
    model = onnx_models.with_node(model, clip)
    model.graph.initializer.append(lo)
    del model.graph.node[-1].input[:]
    model.graph.node[-1].input.extend(["probs", "lo"])
    model.graph.output[0].name = "clipped"
    with pytest.raises(OnnxImportError, match=r"Clip node 'clip_odd': only Clip\(0, 6\)"):
        onnx_import.to_keras(onnx_import.load(model.SerializeToString()))


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tinyfleet.cli", "models", "compress", *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.mark.slow
def test_cli_compress_onnx_end_to_end(built: dict[str, tuple[Path, Path]], tmp_path: Path) -> None:
    model_path, data_path = built["conv"]
    out = tmp_path / "conv.tflite"
    done = _cli("--onnx", str(model_path), "--data", str(data_path), "--out", str(out))
    text = done.stdout + done.stderr
    assert done.returncode == 0, text
    assert not TF_NOISE.findall(text), text
    assert out.read_bytes()[4:8] == b"TFL3"
    assert "ONNX float32 (onnxruntime)" in text and "int8" in text
    assert re.search(r"int8 top-1 agrees with ONNX on \d+\.\d% of held-out rows", text), text
    assert "bit-exact with" in text or "tinyfleet engine: not available" in text, text


@pytest.mark.slow  # imports TensorFlow in a child process
def test_cli_unsupported_op_is_one_line_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(_unsupported_model().SerializeToString())
    data = tmp_path / "d.npz"
    np.savez(data, x=np.zeros((8, 32), np.float32))
    done = _cli("--onnx", str(bad), "--data", str(data), "--out", str(tmp_path / "o.tflite"))
    assert done.returncode == 1, done.stdout + done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: bad.onnx uses ONNX ops"), done.stderr
    assert "LSTM (node 'rnn'" in lines[0] and "Traceback" not in done.stdout + done.stderr
    assert "FancyGate [domain com.acme] (node 'gate')" in lines[0]  # not eaten as console markup
    assert not (tmp_path / "o.tflite").exists()


def test_models_upload_wants_a_tflite_or_onnx_with_data(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tinyfleet.cli import app

    runner = CliRunner()
    common = ["models", "upload", "m", "--version", "1.0.0", "--hardware-class", "1"]

    def said(output: str) -> str:  # Click's usage error in a Rich box, wrapped: back to one line
        return " ".join(re.sub(r"[│╭╮╰╯─]", " ", output).split())

    neither = runner.invoke(app, common)
    assert neither.exit_code == 2 and "give either a .tflite or --onnx with --data" in said(neither.output)
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    no_data = runner.invoke(app, [*common, "--onnx", str(model)])
    assert no_data.exit_code == 2 and "--data pointing to an .npz" in said(no_data.output)
