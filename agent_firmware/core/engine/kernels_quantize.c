/* QUANTIZE (float32 -> int8, int8 -> int8 requantize) and DEQUANTIZE (int8 -> float32), with
 * TFLite's arithmetic: round(x / scale) + zero point in float; requantize by an integer multiplier;
 * dequantize as float(double(scale) * (q - zero point)). */
#include <string.h>

#include "engine_internal.h"
#include "quant.h"
#include "tfa/errors.h"

int tfa_eng_prepare_quantize(tfa_engine_t *e, tfa_eng_op_t *op, uint32_t options)
{
    (void)options; /* QUANTIZE and DEQUANTIZE have none */
    const tfa_eng_tensor_t *in = tfa_eng_io(e, &op->inputs, 0);
    const tfa_eng_tensor_t *out = tfa_eng_io(e, &op->outputs, 0);
    if (in == NULL || in->elements != out->elements) {
        return -TFA_ERR_MODEL_INVALID;
    }
    if (op->code == TFA_OP_DEQUANTIZE) {
        if (in->type != TFA_TYPE_INT8 || out->type != TFA_TYPE_FLOAT32 || in->scale_count != 1) {
            return -TFA_ERR_UNSUPPORTED_OP;
        }
        op->fscale = in->scale;
        op->in_offset = in->zero_point;
    } else {
        if ((in->type != TFA_TYPE_FLOAT32 && in->type != TFA_TYPE_INT8) || out->type != TFA_TYPE_INT8 ||
            out->scale_count != 1 || (in->type == TFA_TYPE_INT8 && in->scale_count != 1)) {
            return -TFA_ERR_UNSUPPORTED_OP;
        }
        op->fscale = out->scale;
        op->out_offset = out->zero_point;
        if (in->type == TFA_TYPE_INT8) {
            int rc = tfa_eng_multiplier((double)in->scale / (double)out->scale, -31, 30, &op->mult,
                                        &op->shift);
            if (rc != 0) {
                return rc;
            }
            op->in_offset = in->zero_point;
        }
    }
    e->mac_count += in->elements;
    return 0;
}

void tfa_eng_run_quantize(const tfa_engine_t *e, const tfa_eng_op_t *op)
{
    const tfa_eng_tensor_t *tin = tfa_eng_io(e, &op->inputs, 0);
    const tfa_eng_tensor_t *tout = tfa_eng_io(e, &op->outputs, 0);
    const uint8_t *in = tfa_eng_cdata(e, tin);
    uint8_t *out = tfa_eng_data(e, tout);
    const uint32_t n = tin->elements;
    if (op->code == TFA_OP_DEQUANTIZE) {
        const double scale = (double)op->fscale;
        for (uint32_t i = 0; i < n; i++) {
            float v = (float)(scale * (double)((int32_t)(int8_t)in[i] - op->in_offset));
            memcpy(out + 4u * i, &v, 4);
        }
    } else if (tin->type == TFA_TYPE_FLOAT32) {
        for (uint32_t i = 0; i < n; i++) {
            float x;
            memcpy(&x, in + 4u * i, 4);
            float r = x / op->fscale;
            /* out of int32 range (or NaN): the reference's float->int32 cast gives INT32_MIN on the
             * x86 host it is checked against; do the same rather than invoke undefined behaviour */
            int32_t q = (r > -2147483648.0f && r < 2147483648.0f) ? (int32_t)tfa_q_roundf(r) : INT32_MIN;
            out[i] = (uint8_t)(int8_t)tfa_q_clamp(tfa_eng_wrap_add(q, op->out_offset), -128, 127);
        }
    } else {
        for (uint32_t i = 0; i < n; i++) {
            int32_t q = tfa_q_mul_by_quantized((int32_t)(int8_t)in[i] - op->in_offset, op->mult, op->shift);
            out[i] = (uint8_t)(int8_t)tfa_q_clamp(tfa_eng_wrap_add(q, op->out_offset), -128, 127);
        }
    }
}
