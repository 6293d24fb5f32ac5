"""Small Keras models sized for a Cortex-M: every layer maps to an op the tinyfleet engine runs."""

from __future__ import annotations

from typing import Any


def build(kind: str, input_shape: tuple[int, ...], classes: int, width: int = 16, seed: int = 0) -> Any:
    """A `keras.Model`: 'dense' for feature vectors, 'conv' for [steps, channels, 1] or images.

    `width` scales every layer, which is how a smaller distillation student is made.
    """
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=input_shape)
    if kind == "dense":
        x = keras.layers.Flatten()(inputs) if len(input_shape) > 1 else inputs
        x = keras.layers.Dense(width * 2, activation="relu")(x)
        x = keras.layers.Dense(width, activation="relu")(x)
    elif kind == "conv":
        kernel = (3, 3) if input_shape[1] > 3 else (3, 1)
        pool = (2, 2) if input_shape[1] > 3 else (2, 1)
        x = keras.layers.Conv2D(width // 2 or 1, kernel, padding="same", activation="relu")(inputs)
        x = keras.layers.MaxPooling2D(pool)(x)
        x = keras.layers.DepthwiseConv2D(kernel, padding="same", activation="relu")(x)
        x = keras.layers.AveragePooling2D(pool)(x)
        x = keras.layers.Flatten()(x)
        x = keras.layers.Dense(width, activation="relu")(x)
    else:
        raise ValueError(f"unknown architecture {kind!r}; choose 'dense' or 'conv'")
    logits = keras.layers.Dense(classes)(x)
    outputs = keras.layers.Softmax()(logits)
    return keras.Model(inputs, outputs)


def default_kind(dataset_name: str) -> str:
    return "dense" if dataset_name == "vibration" else "conv"
