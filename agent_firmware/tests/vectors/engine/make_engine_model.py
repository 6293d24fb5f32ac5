"""Generate engine_ops.tflite: a tiny full-int8 model with the engine's windowed and element-wise ops
(DEPTHWISE_CONV_2D with 4 channels, CONV_2D with RELU6, ADD, AVERAGE/MAX_POOL_2D, MEAN, FULLY_CONNECTED,
LOGISTIC). Used by agent_firmware/tests/test_engine.c (crafted-model regressions: the test mutates
fields of this valid model) and as a seed of the engine fuzz harness. Untrained, fixed seeds.

    .venv/bin/python agent_firmware/tests/vectors/engine/make_engine_model.py
"""
import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parent / "engine_ops.tflite"


def build():
    tf.keras.utils.set_random_seed(7)
    x = tf.keras.Input(shape=(8, 8, 4), batch_size=1)
    d = tf.keras.layers.DepthwiseConv2D(3, padding="valid", depth_multiplier=1)(x)    # 6x6x4
    c = tf.keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu6")(d)  # 3x3x4
    p = tf.keras.layers.AveragePooling2D(2, strides=1, padding="valid")(d)               # 5x5x4
    p = tf.keras.layers.MaxPooling2D(2, strides=2, padding="valid")(p)                   # 2x2x4
    c = tf.keras.layers.Conv2D(4, 2, strides=1, padding="valid")(c)                      # 2x2x4
    s = tf.keras.layers.Add()([c, p])
    m = tf.keras.layers.GlobalAveragePooling2D()(s)                                      # MEAN
    y = tf.keras.layers.Dense(3, activation="sigmoid")(m)
    return tf.keras.Model(x, y)


def write_int8(model, seed, out):
    """Full-int8 conversion with 32 uniform(-1, 1) calibration inputs from `seed`, written to `out`."""
    rng = np.random.default_rng(seed)
    shape = (1, *model.input_shape[1:])

    def rep():
        for _ in range(32):
            yield [rng.uniform(-1.0, 1.0, size=shape).astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    out.write_bytes(conv.convert())
    print(f"wrote {out} ({out.stat().st_size} bytes)")


def main(out=OUT):
    write_int8(build(), 11, out)


if __name__ == "__main__":
    main()
