"""Compression pipeline: quantization keeps accuracy, pruning reaches its sparsity, distillation helps."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("tflite_micro")

from tinyfleet.ml import architectures, compress, datasets, evaluate, pipeline

pytestmark = pytest.mark.slow  # trains Keras models: seconds each


@pytest.fixture(scope="module")
def vibration() -> tuple[datasets.Dataset, datasets.Dataset]:
    return datasets.load("vibration", samples=1500, seed=3).split(seed=3)


@pytest.fixture(scope="module")
def teacher(vibration: tuple[datasets.Dataset, datasets.Dataset]) -> object:
    train, _ = vibration
    model = architectures.build("dense", train.input_shape, len(train.class_names), width=32, seed=0)
    return pipeline.train(model, train, epochs=12)


def test_datasets_are_deterministic_and_cover_every_class() -> None:
    a = datasets.load("gestures", samples=200, seed=5)
    b = datasets.load("gestures", samples=200, seed=5)
    assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)
    assert set(a.y.tolist()) == set(range(len(datasets.GESTURE_CLASSES)))
    assert datasets.load("digits").x.shape[1:] == (8, 8, 1)
    with pytest.raises(ValueError, match="unknown data set"):
        datasets.load("imagenet")


def test_int8_quantization_stays_within_a_few_points_of_float(
    vibration: tuple[datasets.Dataset, datasets.Dataset], teacher: object
) -> None:
    train, test = vibration
    result = pipeline.compress_model(teacher, train, test)
    assert result.tflite[4:8] == b"TFL3"
    assert result.after.size_bytes < result.before.size_bytes
    assert result.after.accuracy > 0.6, "the model should have learned the task"
    assert result.before.accuracy - result.after.accuracy < 0.05
    assert 0 < result.after.arena_bytes <= result.before.arena_bytes


def test_magnitude_pruning_reaches_its_target_sparsity(
    vibration: tuple[datasets.Dataset, datasets.Dataset],
) -> None:
    train, test = vibration
    model = architectures.build("dense", train.input_shape, len(train.class_names), width=16, seed=0)
    pipeline.train(model, train, epochs=8)
    result = pipeline.compress_model(model, train, test, prune_to=0.6, epochs=3)
    assert result.sparsity >= 0.6
    assert compress.sparsity(model) >= 0.6
    assert result.after.accuracy > 0.6


@pytest.mark.slow  # measured > 3 s
def test_distilled_student_beats_the_student_alone_or_nears_the_teacher(
    vibration: tuple[datasets.Dataset, datasets.Dataset], teacher: object
) -> None:
    train, test = vibration
    classes = len(train.class_names)
    teacher_acc = evaluate.tflm_accuracy(pipeline.float_tflite(teacher), test.x, test.y)
    alone = architectures.build("dense", train.input_shape, classes, width=3, seed=1)
    pipeline.train(alone, train, epochs=8)
    alone_acc = evaluate.tflm_accuracy(pipeline.float_tflite(alone), test.x, test.y)
    student = architectures.build("dense", train.input_shape, classes, width=3, seed=1)
    compress.distill(teacher, student, train.x, train.y, epochs=8)
    distilled_acc = evaluate.tflm_accuracy(pipeline.float_tflite(student), test.x, test.y)
    margin = 0.05  # the stated margin: within 5 points of the teacher
    assert distilled_acc >= alone_acc or teacher_acc - distilled_acc <= margin, (
        f"teacher {teacher_acc:.3f}, student alone {alone_acc:.3f}, distilled {distilled_acc:.3f}"
    )


def test_prune_rejects_an_impossible_target(vibration: tuple[datasets.Dataset, datasets.Dataset]) -> None:
    train, _ = vibration
    model = architectures.build("dense", train.input_shape, len(train.class_names), width=4)
    with pytest.raises(ValueError, match="target sparsity"):
        compress.prune_magnitude(model, train.x, train.y, 1.0)


def test_compressed_model_runs_bit_exact_on_the_tinyfleet_engine(
    vibration: tuple[datasets.Dataset, datasets.Dataset], teacher: object
) -> None:
    from tinyfleet.ml import validate

    train, test = vibration
    result = pipeline.compress_model(teacher, train, test)
    check = validate.validate(result.tflite, count=30)
    assert check.engine_checked, check.engine_error
    assert check.engine_bit_exact
    assert check.arena_bytes > 0


def test_conv_models_convert_with_static_shapes_and_run_on_the_engine() -> None:
    """Conv + pooling + Flatten models must not need dynamic-shape ops (SHAPE, PACK) on the device."""
    from tinyfleet.ml import validate

    result = pipeline.compress_task("gestures", samples=400, epochs=2, width=8)
    check = validate.validate(result.tflite, count=10)
    assert check.engine_checked, check.engine_error
    assert check.engine_bit_exact
