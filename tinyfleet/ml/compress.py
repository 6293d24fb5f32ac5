"""The three compression steps: full-integer quantization, magnitude pruning, knowledge distillation.

Pruning and distillation are written here on plain Keras 3 (a mask applied after every training step; a
soft-target loss), so no add-on library is needed and both work with any Keras model built of
Dense/Conv layers.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np


def quantize_int8(model: Any, representative: np.ndarray, samples: int = 200) -> bytes:
    """Full-integer post-training quantization: int8 weights, activations, input and output."""
    import tensorflow as tf

    def dataset() -> Iterator[list[np.ndarray]]:
        for row in representative[:samples]:
            yield [row[np.newaxis].astype(np.float32)]

    converter = converter_for(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    with warnings.catch_warnings():
        # TF's converter warns about input statistics that only its legacy path uses; the
        # representative data set above is what calibrates the int8 input.
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected")
        return bytes(converter.convert())


def converter_for(model: Any) -> Any:
    """A TFLite converter for `model` traced with a batch of exactly 1.

    A device runs one input at a time; fixing the batch makes every shape static, so Flatten becomes one
    RESHAPE instead of the SHAPE/STRIDED_SLICE/PACK chain a dynamic batch needs (ops an MCU engine lacks).
    """
    import keras
    import tensorflow as tf

    single = keras.Input(shape=model.input_shape[1:], batch_size=1)
    return tf.lite.TFLiteConverter.from_keras_model(keras.Model(single, model(single)))


def _prunable(model: Any) -> list[Any]:
    """The kernels worth pruning: Dense and Conv weights (not biases, not depthwise filters)."""
    import keras

    return [
        layer.kernel
        for layer in model.layers
        if isinstance(layer, keras.layers.Dense | keras.layers.Conv2D) and hasattr(layer, "kernel")
    ]


def _apply_masks(kernels: list[Any], sparsity: float) -> None:
    for kernel in kernels:
        values = np.asarray(kernel.numpy())
        k = int(np.ceil(values.size * sparsity))
        if k == 0:
            continue
        threshold = np.partition(np.abs(values).ravel(), k - 1)[k - 1]
        kernel.assign(np.where(np.abs(values) <= threshold, 0.0, values).astype(values.dtype))


def sparsity(model: Any) -> float:
    """Fraction of exactly-zero weights over the prunable kernels."""
    kernels = [np.asarray(k.numpy()) for k in _prunable(model)]
    total = sum(k.size for k in kernels)
    return float(sum(int((k == 0).sum()) for k in kernels) / total) if total else 0.0


def prune_magnitude(
    model: Any, x: np.ndarray, y: np.ndarray, target_sparsity: float, epochs: int = 4, batch_size: int = 32
) -> Any:
    """Prune the smallest weights to `target_sparsity`, rising step by step while fine-tuning.

    The sparsity follows a cubic schedule (fast early, gentle near the target); after every batch the
    mask is re-applied so the optimizer cannot revive pruned weights. The model must be compiled.
    """
    import keras

    if not 0.0 <= target_sparsity < 1.0:
        raise ValueError(f"target sparsity must be in [0, 1), got {target_sparsity}")
    kernels = _prunable(model)
    steps_per_epoch = max(1, int(np.ceil(len(x) / batch_size)))
    ramp = max(1, (epochs - 1) * steps_per_epoch)  # the last epoch fine-tunes at the target

    class Pruner(keras.callbacks.Callback):  # type: ignore[misc]
        step = 0

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            Pruner.step += 1
            done = min(1.0, Pruner.step / ramp)
            _apply_masks(kernels, target_sparsity * (1.0 - (1.0 - done) ** 3))

    model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0, callbacks=[Pruner()])
    _apply_masks(kernels, target_sparsity)
    return model


def distill(
    teacher: Any,
    student: Any,
    x: np.ndarray,
    y: np.ndarray,
    temperature: float = 4.0,
    alpha: float = 0.3,
    epochs: int = 10,
    batch_size: int = 32,
    learning_rate: float = 0.005,
) -> Any:
    """Train `student` on a mix of the labels (weight alpha) and the teacher's softened outputs.

    Both models end in Softmax; logits are recovered as log-probabilities, which differ from the
    pre-softmax logits only by a constant per row, and softmax ignores that constant.
    """
    import keras
    import tensorflow as tf

    soft_targets = tf.nn.softmax(tf.math.log(teacher.predict(x, verbose=0) + 1e-8) / temperature)
    optimizer = keras.optimizers.Adam(learning_rate)
    dataset = tf.data.Dataset.from_tensor_slices((x, y, soft_targets)).shuffle(len(x), seed=0)
    for _ in range(epochs):
        for xb, yb, tb in dataset.batch(batch_size):
            with tf.GradientTape() as tape:
                probs = student(xb, training=True)
                hard = keras.losses.sparse_categorical_crossentropy(yb, probs)
                soft_student = tf.nn.softmax(tf.math.log(probs + 1e-8) / temperature)
                soft = keras.losses.kl_divergence(tb, soft_student) * temperature**2
                loss = tf.reduce_mean(alpha * hard + (1.0 - alpha) * soft)
            grads = tape.gradient(loss, student.trainable_variables)
            optimizer.apply_gradients(zip(grads, student.trainable_variables, strict=True))
    return student
