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
import tensorflow as tf  # noqa: E402
from make_engine_model import write_int8  # noqa: E402

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


def main(out=OUT):
    write_int8(build(), 15, out)


if __name__ == "__main__":
    main()
