"""Model compression pipeline: Keras model -> int8 `.tflite` (quantize, prune, distill).

TensorFlow is imported lazily inside the functions that need it, so that the server and CLI start fast
and the rest of tinyfleet works without it.
"""
