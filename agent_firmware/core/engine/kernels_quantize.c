/* QUANTIZE (float32 -> int8/int16; requantize between int8, int16 and int32 in the pairs TFLM's
 * reference accepts) and DEQUANTIZE (int8 -> float32), with TFLite's arithmetic: round(x / scale) +
 * zero point in float; requantize as TFLM's reference Requantize: (q - input zero point) times the
 * integer multiplier of in/out scale, plus the output zero point, clamped to the output type;
 * dequantize as float(double(scale) * (q - zero point)). */
#include <string.h>

#include "engine_internal.h"
#include "quant.h"
#include "tfa/errors.h"

/* The (input, output) type pairs of TFLM's reference QUANTIZE (uint8 aside). */
static int prv_pair_ok(uint8_t in, uint8_t out)
{
    switch (in) {
    case TFA_TYPE_FLOAT32:
        return out == TFA_TYPE_INT8 || out == TFA_TYPE_INT16;
    case TFA_TYPE_INT8:
    case TFA_TYPE_INT16:
        return out == TFA_TYPE_INT8 || out == TFA_TYPE_INT16 || out == TFA_TYPE_INT32;
    case TFA_TYPE_INT32:
        return out == TFA_TYPE_INT8 || out == TFA_TYPE_INT16;
    default:
        return 0;
    }
}

static int32_t prv_load(const uint8_t *p, uint8_t type, uint32_t i)
{
    if (type == TFA_TYPE_INT8) {
        return (int32_t)(int8_t)p[i];
    }
    if (type == TFA_TYPE_INT16) {
        int16_t v;
        memcpy(&v, p + 2u * i, 2);
        return v;
    }
    int32_t v;
    memcpy(&v, p + 4u * i, 4);
    return v;
}

/* Clamp to the output type's range and store. */
static void prv_store(uint8_t *p, uint8_t type, uint32_t i, int32_t v)
{
    if (type == TFA_TYPE_INT8) {
        p[i] = (uint8_t)(int8_t)tfa_q_clamp(v, -128, 127);
    } else if (type == TFA_TYPE_INT16) {
        int16_t h = (int16_t)tfa_q_clamp(v, -32768, 32767);
        memcpy(p + 2u * i, &h, 2);
    } else {
        memcpy(p + 4u * i, &v, 4);
    }
}

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
        if (!prv_pair_ok(in->type, out->type) || out->scale_count != 1 ||
            (in->type != TFA_TYPE_FLOAT32 && in->scale_count != 1)) {
            return -TFA_ERR_UNSUPPORTED_OP;
        }
        op->fscale = out->scale;
        op->out_offset = out->zero_point;
        if (in->type != TFA_TYPE_FLOAT32) {
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
            prv_store(out, tout->type, i, tfa_eng_wrap_add(q, op->out_offset));
        }
    } else {
        for (uint32_t i = 0; i < n; i++) {
            /* int32 input: the reference's int32 subtraction and addition, with wrap-around */
            int32_t x = (int32_t)((uint32_t)prv_load(in, tin->type, i) - (uint32_t)op->in_offset);
            int32_t q = tfa_q_mul_by_quantized(x, op->mult, op->shift);
            prv_store(out, tout->type, i, tfa_eng_wrap_add(q, op->out_offset));
        }
    }
}
