/* HARD_SWISH, int8: x * relu6(x + 3) / 6 in TFLite's 16-bit fixed-point arithmetic (reference_ops::
 * HardSwish): the input moves to a "hi-res" scale (x 2^7), a relu-ish factor in [0, 1] is derived from
 * it with a 16-bit multiplier (3.0 = 32768), and the product is shifted to the output scale. */
#include "engine_internal.h"
#include "quant.h"
#include "tfa/errors.h"

/* QuantizeMultiplier's int32 multiplier rounded to the 16-bit one TFLite uses. */
static int16_t prv_mult16(int32_t m)
{
    if (m >= INT32_MAX - (1 << 15)) {
        return INT16_MAX;
    }
    return (int16_t)((m + (1 << 15)) >> 16);
}

/* The float-then-double path of TFLite's prepare: ratio computed in float, quantized from double. */
static int prv_multiplier16(float ratio, int32_t *mult16, int32_t *exponent)
{
    if (!(ratio > 0.0f) || ratio > 1e30f) {
        return -TFA_ERR_MODEL_INVALID;
    }
    int32_t m;
    int shift;
    tfa_q_quantize_multiplier((double)ratio, &m, &shift);
    *mult16 = prv_mult16(m);
    *exponent = shift;
    return 0;
}

int tfa_eng_prepare_hard_swish(tfa_engine_t *e, tfa_eng_op_t *op, uint32_t options)
{
    (void)options; /* HARD_SWISH has none */
    const tfa_eng_tensor_t *in = tfa_eng_io(e, &op->inputs, 0);
    const tfa_eng_tensor_t *out = tfa_eng_io(e, &op->outputs, 0);
    int rc = tfa_eng_check(in, TFA_TYPE_INT8, 0);
    rc = rc ? rc : tfa_eng_check(out, TFA_TYPE_INT8, 0);
    if (rc != 0) {
        return rc;
    }
    if (in->scale_count != 1 || out->scale_count != 1) {
        return -TFA_ERR_UNSUPPORTED_OP;
    }
    if (in->elements != out->elements) {
        return -TFA_ERR_MODEL_INVALID;
    }
    const float hires = (1.0f / 128.0f) * in->scale;
    rc = prv_multiplier16(hires / out->scale, &op->mult, &op->shift);
    rc = rc ? rc : prv_multiplier16(hires / (3.0f / 32768.0f), &op->mult1, &op->shift1);
    if (rc != 0) {
        return rc;
    }
    /* TFLite requires a right shift at the output; shifts past 15 bits are not defined on int16, and
     * TFLite's saturating left shift overflows int32 past 16 */
    if (op->shift > 0 || op->shift < -15 || op->shift1 < -15 || op->shift1 > 16) {
        return -TFA_ERR_UNSUPPORTED_OP;
    }
    op->in_offset = in->zero_point; /* here the zero points themselves */
    op->out_offset = out->zero_point;
    e->mac_count += in->elements;
    return 0;
}

/* gemmlowp's SaturatingRoundingDoublingHighMul on int16 */
static int32_t prv_rdh16(int32_t a, int32_t b)
{
    if (a == INT16_MIN && b == INT16_MIN) {
        return INT16_MAX;
    }
    int32_t ab = a * b;
    return (ab + (ab >= 0 ? (1 << 14) : 1 - (1 << 14))) / (1 << 15);
}

static int32_t prv_sat16(int32_t v)
{
    return tfa_q_clamp(v, INT16_MIN, INT16_MAX);
}

void tfa_eng_run_hard_swish(const tfa_engine_t *e, const tfa_eng_op_t *op)
{
    const tfa_eng_tensor_t *tin = tfa_eng_io(e, &op->inputs, 0);
    const tfa_eng_tensor_t *tout = tfa_eng_io(e, &op->outputs, 0);
    const int8_t *in = (const int8_t *)tfa_eng_cdata(e, tin);
    int8_t *out = (int8_t *)tfa_eng_data(e, tout);
    for (uint32_t i = 0; i < tin->elements; i++) {
        /* int16 wrap-around as TFLite's casts (|x - zp| <= 255, so x 2^7 fits) */
        const int32_t hires = (int32_t)(int16_t)(((int32_t)in[i] - op->in_offset) * 128);
        const int32_t preshift = prv_rdh16(hires, op->mult);
        int32_t reluish = hires;
        if (op->shift1 > 0) { /* all but the last bit of the left shift, saturating */
            reluish = prv_sat16(reluish * (1 << (op->shift1 - 1)));
        }
        reluish = prv_rdh16(reluish, op->mult1);
        if (op->shift1 > 0) {
            reluish = prv_sat16(reluish * 2);
        }
        if (op->shift1 < 0) {
            reluish = tfa_q_round_shift(reluish, -op->shift1);
        }
        reluish = (reluish + (1 << 15)) >> 1; /* [-1, 1] to [0, 1] */
        /* SaturatingDoublingHighMul: truncating, not rounding */
        int32_t v = (reluish == INT16_MIN && preshift == INT16_MIN) ? INT16_MAX
                                                                    : (reluish * preshift) / (1 << 15);
        v = (int32_t)(int16_t)v;
        v = (int32_t)(int16_t)(tfa_q_round_shift(v, -op->shift) + op->out_offset); /* int16 sum */
        out[i] = (int8_t)tfa_q_clamp(v, -128, 127);
    }
}
