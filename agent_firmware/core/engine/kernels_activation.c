/* SOFTMAX, LOGISTIC and TANH, int8 in and out, using gemmlowp fixed-point exp / reciprocal exactly as
 * TFLite's reference kernels: softmax differences are scaled to Q5.26, exps accumulated in Q12.19;
 * logistic and tanh inputs are scaled to Q4.27. Outputs must use scale 1/256, zero point -128
 * (TANH: 1/128, zero point 0). SOFTMAX may also write int16 (zero point -32768, scale 1/65536 within
 * TFLM's 0.1%): the same arithmetic, rounded to 16 instead of 8 bits. */
#include <string.h>

#include "engine_internal.h"
#include "quant.h"
#include "tfa/errors.h"

enum { SOFTMAX_BETA = 0, SCALED_DIFF_BITS = 5, ACCUM_BITS = 12, LOGISTIC_INPUT_BITS = 4 };

static int prv_check_prob_output(const tfa_eng_tensor_t *out)
{
    return out->scale_count == 1 && out->zero_point == -128 && out->scale == 1.0f / 256.0f;
}

int tfa_eng_prepare_softmax(tfa_engine_t *e, tfa_eng_op_t *op, uint32_t options)
{
    tfa_fb_t fb = {e->model, e->model_len};
    const tfa_eng_tensor_t *in = tfa_eng_io(e, &op->inputs, 0);
    const tfa_eng_tensor_t *out = tfa_eng_io(e, &op->outputs, 0);
    float beta = 0.0f;
    int rc = tfa_eng_check(in, TFA_TYPE_INT8, 0);
    const int out16 = out != NULL && out->type == TFA_TYPE_INT16;
    rc = rc ? rc : tfa_eng_check(out, out16 ? TFA_TYPE_INT16 : TFA_TYPE_INT8, 0);
    rc = rc ? rc : (options ? tfa_fb_f32(&fb, options, SOFTMAX_BETA, 0.0f, &beta) : 0);
    if (rc != 0) {
        return rc;
    }
    /* int16: TFLM's check, in float, that the scale is within 0.1% of 1/65536 */
    const float d16 = out16 ? out->scale - 1.0f / 65536.0f : 0.0f;
    const int out_ok = out16 ? out->scale_count == 1 && out->zero_point == -32768 &&
                                   (d16 < 0.0f ? -d16 : d16) <= 0.001f * 1.0f / 65536.0f
                             : prv_check_prob_output(out);
    if (in->scale_count == 0 || !out_ok) {
        return -TFA_ERR_UNSUPPORTED_OP;
    }
    if (in->rank < 1 || !tfa_eng_same_shape(in, out) || in->dims[in->rank - 1] <= 0) {
        return -TFA_ERR_MODEL_INVALID;
    }
    double real = (double)beta * (double)in->scale * (double)(1 << (31 - SCALED_DIFF_BITS));
    if (!(real > 0.0)) {
        return -TFA_ERR_MODEL_INVALID; /* beta NaN, zero or negative */
    }
    if (real > 2147483647.0) {
        real = 2147483647.0;
    }
    int shift;
    tfa_q_quantize_multiplier(real, &op->mult, &shift);
    if (shift < 0) {
        return -TFA_ERR_UNSUPPORTED_OP; /* TFLite requires a multiplier >= 1 */
    }
    op->left_shift = shift;
    op->diff_min = -tfa_q_input_radius(SCALED_DIFF_BITS, shift, 31);
    op->depth_mult = in->dims[in->rank - 1];
    e->mac_count += in->elements;
    return 0;
}

void tfa_eng_run_softmax(const tfa_engine_t *e, const tfa_eng_op_t *op)
{
    const tfa_eng_tensor_t *tin = tfa_eng_io(e, &op->inputs, 0);
    const tfa_eng_tensor_t *tout = tfa_eng_io(e, &op->outputs, 0);
    const int8_t *in = (const int8_t *)tfa_eng_cdata(e, tin);
    uint8_t *out = tfa_eng_data(e, tout);
    const int out16 = tout->type == TFA_TYPE_INT16;
    const int32_t lo = out16 ? -32768 : -128;
    const int32_t hi = out16 ? 32767 : 127;
    const int out_bits = out16 ? 16 : 8;
    const uint32_t depth = (uint32_t)op->depth_mult;
    const uint32_t rows = tin->elements / depth;
    for (uint32_t r = 0; r < rows; r++) {
        const int8_t *x = in + (size_t)r * depth;
        const size_t row = (size_t)r * depth;
        int32_t max = -128;
        for (uint32_t c = 0; c < depth; c++) {
            max = x[c] > max ? x[c] : max;
        }
        int32_t sum = 0; /* Q12.19 */
        for (uint32_t c = 0; c < depth; c++) {
            int32_t diff = (int32_t)x[c] - max;
            if (diff >= op->diff_min) {
                int32_t scaled = tfa_q_high_mul(diff * (1 << op->left_shift), op->mult);
                int32_t ex = tfa_q_exp_on_negative_values(scaled, SCALED_DIFF_BITS);
                sum += tfa_q_mul_pot(ex, -ACCUM_BITS);
            }
        }
        /* reciprocal of the sum (TFLite GetReciprocal) */
        int headroom_plus_one = 0;
        for (uint32_t v = (uint32_t)sum; !(v & 0x80000000u) && headroom_plus_one < 32; v <<= 1) {
            headroom_plus_one++;
        }
        int bits_over_unit = ACCUM_BITS - headroom_plus_one;
        int32_t shifted_minus_one =
            (int32_t)(((uint32_t)sum << headroom_plus_one) - ((uint32_t)1 << 31));
        int32_t scale = tfa_q_one_over_one_plus_x(shifted_minus_one);
        for (uint32_t c = 0; c < depth; c++) {
            int32_t diff = (int32_t)x[c] - max;
            int32_t v = lo;
            if (diff >= op->diff_min) {
                int32_t scaled = tfa_q_high_mul(diff * (1 << op->left_shift), op->mult);
                int32_t ex = tfa_q_exp_on_negative_values(scaled, SCALED_DIFF_BITS);
                int32_t unsat = tfa_q_round_shift(tfa_q_high_mul(scale, ex), bits_over_unit + 31 - out_bits);
                v = tfa_q_clamp(unsat + lo, lo, hi);
            }
            if (out16) {
                int16_t h = (int16_t)v;
                memcpy(out + 2u * (row + c), &h, 2);
            } else {
                out[row + c] = (uint8_t)(int8_t)v;
            }
        }
    }
}

int tfa_eng_prepare_logistic(tfa_engine_t *e, tfa_eng_op_t *op, uint32_t options)
{
    (void)options; /* LOGISTIC and TANH have none */
    const tfa_eng_tensor_t *in = tfa_eng_io(e, &op->inputs, 0);
    const tfa_eng_tensor_t *out = tfa_eng_io(e, &op->outputs, 0);
    int rc = tfa_eng_check(in, TFA_TYPE_INT8, 0);
    rc = rc ? rc : tfa_eng_check(out, TFA_TYPE_INT8, 0);
    if (rc != 0) {
        return rc;
    }
    const int out_ok = op->code == TFA_OP_TANH
                           ? out->scale_count == 1 && out->zero_point == 0 && out->scale == 1.0f / 128.0f
                           : prv_check_prob_output(out);
    if (in->scale_count == 0 || !out_ok) {
        return -TFA_ERR_UNSUPPORTED_OP;
    }
    if (in->elements != out->elements) {
        return -TFA_ERR_MODEL_INVALID;
    }
    double real = (double)in->scale * (double)(1 << (31 - LOGISTIC_INPUT_BITS));
    int shift;
    double q = tfa_q_frexp(real, &shift);
    /* TFLite rounds without renormalising a result of 2^31; keep its wrap-around */
    op->mult = (int32_t)(uint32_t)tfa_q_round(q * 2147483648.0);
    op->left_shift = shift;
    /* a shift above 30 (input scale >= 16) gives TFLite a radius of 0: every input saturates, the
     * multiply is never reached; keep that (even input 0 gives -128, as in TFLite) */
    if (shift > 62 || shift < -31) {
        return -TFA_ERR_UNSUPPORTED_OP;
    }
    op->radius = shift >= 0 ? tfa_q_input_radius(LOGISTIC_INPUT_BITS, shift, 31) : INT32_MAX;
    op->in_offset = in->zero_point;
    e->mac_count += in->elements;
    return 0;
}

void tfa_eng_run_logistic(const tfa_engine_t *e, const tfa_eng_op_t *op)
{
    const tfa_eng_tensor_t *tin = tfa_eng_io(e, &op->inputs, 0);
    const tfa_eng_tensor_t *tout = tfa_eng_io(e, &op->outputs, 0);
    const int8_t *in = (const int8_t *)tfa_eng_cdata(e, tin);
    int8_t *out = (int8_t *)tfa_eng_data(e, tout);
    for (uint32_t i = 0; i < tin->elements; i++) {
        int32_t x = (int32_t)in[i] - op->in_offset;
        int32_t v;
        if (x <= -op->radius) {
            v = -128;
        } else if (x >= op->radius) {
            v = 127;
        } else {
            int32_t q4 = tfa_q_mul_by_quantized(x, op->mult, op->left_shift);
            if (op->code == TFA_OP_TANH) {
                v = tfa_q_clamp(tfa_q_round_shift(tfa_q_tanh(q4, LOGISTIC_INPUT_BITS), 31 - 7), -128, 127);
            } else {
                int32_t q0 = tfa_q_logistic(q4, LOGISTIC_INPUT_BITS);
                v = tfa_q_clamp(tfa_q_round_shift(q0, 31 - 8) - 128, -128, 127);
            }
        }
        out[i] = (int8_t)v;
    }
}
