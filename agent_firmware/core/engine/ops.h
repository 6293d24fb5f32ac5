/* The engine's operator set: the ONE place it is spelled (TFLM-style kernel registration).
 *
 * Each row is X(builtin code, NAME, prepare, run, optimized):
 *   builtin code   TFLite schema BuiltinOperator value
 *   NAME           the schema's name; gives TFA_OP_<NAME> and tfa_engine_op_name()
 *   prepare        validates tensors and options, fills the op record; 0 or -TFA_ERR_x
 *   run            the reference kernel, bit-exact with TFLM's reference kernels
 *   optimized      TFA_ENG_OPT(x): the optimized variants with identical results, tfa_eng_x_dsp
 *                  (Cortex-M4 DSP, kernels_*_dsp.c) and tfa_eng_x_host (hosted builds,
 *                  kernels_*_host.c), or NULL; prepare picks the engine's kernel set's variant per
 *                  op when its select() accepts
 *
 * Everything else derives from this list: the TFA_OP_x enum (engine_internal.h), the kernel table and
 * the supported-op check (ops.c), tfa_engine_supported_op() for foreign callers. The Python list
 * tinyfleet.device.engine_check.ENGINE_BUILTIN_OPS is checked against it by tests/device/test_engine_ops.py.
 * Several codes may share a prepare/run pair: the kernel tells them apart by op->code. */
#ifndef TFA_ENGINE_OPS_H
#define TFA_ENGINE_OPS_H

#define TFA_ENG_OP_TABLE(X)                                                                    \
    X(0, ADD, tfa_eng_prepare_binary, tfa_eng_run_binary, TFA_ENG_OPT(add))                    \
    X(1, AVERAGE_POOL_2D, tfa_eng_prepare_pool, tfa_eng_run_pool, NULL)                        \
    X(2, CONCATENATION, tfa_eng_prepare_shape_op, tfa_eng_run_shape_op, NULL)                  \
    X(3, CONV_2D, tfa_eng_prepare_conv, tfa_eng_run_conv, TFA_ENG_OPT(conv))                   \
    X(4, DEPTHWISE_CONV_2D, tfa_eng_prepare_conv, tfa_eng_run_depthwise, TFA_ENG_OPT(depthwise)) \
    X(6, DEQUANTIZE, tfa_eng_prepare_quantize, tfa_eng_run_quantize, NULL)                     \
    X(9, FULLY_CONNECTED, tfa_eng_prepare_fc, tfa_eng_run_fc, TFA_ENG_OPT(fc))                 \
    X(14, LOGISTIC, tfa_eng_prepare_logistic, tfa_eng_run_logistic, NULL)                      \
    X(17, MAX_POOL_2D, tfa_eng_prepare_pool, tfa_eng_run_pool, NULL)                           \
    X(18, MUL, tfa_eng_prepare_binary, tfa_eng_run_binary, NULL)                               \
    X(22, RESHAPE, tfa_eng_prepare_shape_op, tfa_eng_run_shape_op, NULL)                       \
    X(25, SOFTMAX, tfa_eng_prepare_softmax, tfa_eng_run_softmax, NULL)                         \
    X(27, SVDF, tfa_eng_prepare_svdf, tfa_eng_run_svdf, TFA_ENG_OPT(svdf))                     \
    X(28, TANH, tfa_eng_prepare_logistic, tfa_eng_run_logistic, NULL)                          \
    X(34, PAD, tfa_eng_prepare_shape_op, tfa_eng_run_shape_op, NULL)                           \
    X(40, MEAN, tfa_eng_prepare_mean, tfa_eng_run_mean, NULL)                                  \
    X(43, SQUEEZE, tfa_eng_prepare_shape_op, tfa_eng_run_shape_op, NULL)                       \
    X(45, STRIDED_SLICE, tfa_eng_prepare_strided_slice, tfa_eng_run_strided_slice, NULL)       \
    X(49, SPLIT, tfa_eng_prepare_split, tfa_eng_run_split, NULL)                               \
    X(67, TRANSPOSE_CONV, tfa_eng_prepare_transpose_conv, tfa_eng_run_transpose_conv, NULL)    \
    X(97, RESIZE_NEAREST_NEIGHBOR, tfa_eng_prepare_resize_nearest, tfa_eng_run_resize_nearest, NULL) \
    X(114, QUANTIZE, tfa_eng_prepare_quantize, tfa_eng_run_quantize, NULL)                     \
    X(117, HARD_SWISH, tfa_eng_prepare_hard_swish, tfa_eng_run_hard_swish, NULL)

#endif
