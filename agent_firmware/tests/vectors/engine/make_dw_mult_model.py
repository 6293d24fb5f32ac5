"""Generate dw_mult.tflite: three DEPTHWISE_CONV_2D layers with several input channels and depth
multipliers above 1 (5: four outputs per inner loop plus one; 2: the two-output loop, stride 2; 3: two
plus one, odd tap count, stride 3), per-channel int8, RELU/RELU6. The optimized (DSP) kernels' path for
these shapes is checked against the reference by agent_firmware/tests/test_engine_dsp.c, and
bench/inference_m4.py --model measures it on the M4. Untrained, fixed seeds.

    .venv/bin/python agent_firmware/tests/vectors/engine/make_dw_mult_model.py
"""
import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parent / "dw_mult.tflite"


def build():
    tf.keras.utils.set_random_seed(15)
    layers = tf.keras.layers
    x = tf.keras.Input(shape=(16, 16, 3), batch_size=1)
    y = layers.DepthwiseConv2D(3, padding="same", depth_multiplier=5, activation="relu")(x)  # 16x16x15
    y = layers.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2, activation="relu6")(y)
    # 8x8x30 above
    # 2x2x90 (a small output: INFER answers it in one frame on the M4)
    y = layers.DepthwiseConv2D((3, 3), strides=3, padding="valid", depth_multiplier=3)(y)
    return tf.keras.Model(x, y)


def main():
    model = build()
    rng = np.random.default_rng(15)

    def rep():
        for _ in range(32):
            yield [rng.uniform(-1.0, 1.0, size=(1, 16, 16, 3)).astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    OUT.write_bytes(conv.convert())
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
