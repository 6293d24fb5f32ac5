/* ADD and MUL, int8 with up-to-4-D broadcasting (TFLite reference_integer_ops Add/Mul arithmetic:
 * ADD rescales both inputs to a common scale with a 20-bit left shift, MUL rescales the product).
 * ADD of two same-shape tensors (a residual connection) also has an optimized variant, the same
 * arithmetic with the requantization inlined (dsp.h), for the DSP and the host kernel sets. */
#include "engine_internal.h"
#include "quant.h"
#include "tfa/errors.h"

enum { BIN_ACTIVATION = 0, ADD_LEFT_SHIFT = 20 };

/* dims padded on the left with 1s to 4-D */
static void prv_dims4(const tfa_eng_tensor_t *t, int32_t d[4])
{
    for (int i = 0; i < 4; i++) {
        int src = i - (4 - (int)t->rank);
        d[i] = src >= 0 ? t->dims[src] : 1;
    }
}

int tfa_eng_prepare_binary(tfa_engine_t *e, tfa_eng_op_t *op, uint32_t options)
{
    tfa_fb_t fb = {e->model, e->model_len};
    const tfa_eng_tensor_t *a = tfa_eng_io(e, &op->inputs, 0);
    const tfa_eng_tensor_t *b = tfa_eng_io(e, &op->inputs, 1);
    const tfa_eng_tensor_t *out = tfa_eng_io(e, &op->outputs, 0);
    uint8_t act = 0;
    int rc = tfa_eng_check(a, TFA_TYPE_INT8, 0);
    rc = rc ? rc : tfa_eng_check(b, TFA_TYPE_INT8, 0);
    rc = rc ? rc : tfa_eng_check(out, TFA_TYPE_INT8, 0);
    rc = rc ? rc : (options ? tfa_fb_u8(&fb, options, BIN_ACTIVATION, 0, &act) : 0);
    if (rc != 0) {
        return rc;
    }
    if (act > 3 || a->rank > 4 || b->rank > 4 || out->rank > 4 || a->scale_count == 0 ||
        b->scale_count == 0 || out->scale_count == 0) {
        return -TFA_ERR_UNSUPPORTED_OP;
    }
    int32_t da[4], db[4], dout[4];
    prv_dims4(a, da);
    prv_dims4(b, db);
    prv_dims4(out, dout);
    for (int i = 0; i < 4; i++) {
        int32_t want = da[i] == 1 ? db[i] : da[i];
        if ((da[i] != 1 && db[i] != 1 && da[i] != db[i]) || dout[i] != want) {
            return -TFA_ERR_MODEL_INVALID;
        }
    }
    op->in_offset = -a->zero_point;
    op->in2_offset = -b->zero_point;
    op->out_offset = out->zero_point;
    if (op->code == TFA_OP_ADD) {
        /* TFLite's QuantizeMultiplierSmallerThanOneExp: every ADD multiplier is below one, so every
         * shift is a right shift (<= 0). An output scale far below the inputs' used to give a positive
         * shift, i.e. a negative shift count in the kernel's rounding shift (undefined behaviour). */
        const float max_scale = a->scale > b->scale ? a->scale : b->scale;
        const double twice_max = 2.0 * (double)max_scale;
        rc = tfa_eng_multiplier((double)a->scale / twice_max, -31, 0, &op->mult1, &op->shift1);
        rc = rc ? rc : tfa_eng_multiplier((double)b->scale / twice_max, -31, 0, &op->mult2, &op->shift2);
        rc = rc ? rc : tfa_eng_multiplier(twice_max / ((double)(1 << ADD_LEFT_SHIFT) * (double)out->scale),
                                          -31, 0, &op->mult, &op->shift);
        op->left_shift = ADD_LEFT_SHIFT;
    } else {
        rc = tfa_eng_multiplier((double)a->scale * (double)b->scale / (double)out->scale, -31, 30, &op->mult,
                                &op->shift);
    }
    if (rc != 0) {
        return rc;
    }
    if (tfa_q_activation_range(act, out->scale, out->zero_point, &op->act_min, &op->act_max) != 0) {
        return -TFA_ERR_MODEL_INVALID;
    }
    e->mac_count += out->elements;
    return 0;
}

/* TFLite MultiplyByQuantizedMultiplierSmallerThanOneExp. */
static int32_t prv_mul_small(int32_t x, int32_t mult, int32_t shift)
{
    return tfa_q_round_shift(tfa_q_high_mul(x, mult), -shift);
}

static int32_t prv_apply(const tfa_eng_op_t *op, int32_t x, int32_t y)
{
    int32_t a = x + op->in_offset;
    int32_t b = y + op->in2_offset;
    int32_t r;
    if (op->code == TFA_OP_ADD) {
        int32_t sa = prv_mul_small(a * (1 << op->left_shift), op->mult1, op->shift1);
        int32_t sb = prv_mul_small(b * (1 << op->left_shift), op->mult2, op->shift2);
        r = tfa_eng_wrap_add(prv_mul_small(tfa_eng_wrap_add(sa, sb), op->mult, op->shift), op->out_offset);
    } else {
        r = tfa_eng_wrap_add(tfa_q_mul_by_quantized(a * b, op->mult, op->shift), op->out_offset);
    }
    return tfa_q_clamp(r, op->act_min, op->act_max);
}

void tfa_eng_run_binary(const tfa_engine_t *e, const tfa_eng_op_t *op)
{
    const tfa_eng_tensor_t *ta = tfa_eng_io(e, &op->inputs, 0);
    const tfa_eng_tensor_t *tb = tfa_eng_io(e, &op->inputs, 1);
    const tfa_eng_tensor_t *tout = tfa_eng_io(e, &op->outputs, 0);
    const int8_t *a = (const int8_t *)tfa_eng_cdata(e, ta);
    const int8_t *b = (const int8_t *)tfa_eng_cdata(e, tb);
    int8_t *out = (int8_t *)tfa_eng_data(e, tout);
    if (ta->elements == tout->elements && tb->elements == tout->elements) {
        for (uint32_t i = 0; i < tout->elements; i++) {
            out[i] = (int8_t)prv_apply(op, a[i], b[i]);
        }
        return;
    }
    int32_t da[4], db[4], d[4];
    prv_dims4(ta, da);
    prv_dims4(tb, db);
    prv_dims4(tout, d);
    size_t sa[4], sb[4]; /* strides, 0 along broadcast dims */
    size_t stride_a = 1, stride_b = 1;
    for (int i = 3; i >= 0; i--) {
        sa[i] = da[i] == 1 ? 0 : stride_a;
        sb[i] = db[i] == 1 ? 0 : stride_b;
        stride_a *= (size_t)da[i];
        stride_b *= (size_t)db[i];
    }
    size_t o = 0;
    for (int32_t i0 = 0; i0 < d[0]; i0++) {
        for (int32_t i1 = 0; i1 < d[1]; i1++) {
            for (int32_t i2 = 0; i2 < d[2]; i2++) {
                for (int32_t i3 = 0; i3 < d[3]; i3++) {
                    size_t ia = (size_t)i0 * sa[0] + (size_t)i1 * sa[1] + (size_t)i2 * sa[2] + (size_t)i3 * sa[3];
                    size_t ib = (size_t)i0 * sb[0] + (size_t)i1 * sb[1] + (size_t)i2 * sb[2] + (size_t)i3 * sb[3];
                    out[o++] = (int8_t)prv_apply(op, a[ia], b[ib]);
                }
            }
        }
    }
}

/* ---- optimized ADD (same shapes): tfa_dsp_requantize is TFLite's MultiplyByQuantizedMultiplier, which
 * for a shift <= 0 (every ADD shift, see prepare) is the SmallerThanOneExp form prv_mul_small computes;
 * inlined it avoids three out-of-line calls with a 64-bit division each per element. ---- */

#if TFA_ENG_OPTIMIZED || TFA_ENG_HOST_KERNELS
static int prv_add_select(const tfa_engine_t *e, tfa_eng_op_t *op)
{
    const tfa_eng_tensor_t *ta = tfa_eng_io(e, &op->inputs, 0);
    const tfa_eng_tensor_t *tb = tfa_eng_io(e, &op->inputs, 1);
    const tfa_eng_tensor_t *tout = tfa_eng_io(e, &op->outputs, 0);
    return op->code == TFA_OP_ADD && ta->elements == tout->elements && tb->elements == tout->elements;
}

static void prv_add_run(const tfa_engine_t *e, const tfa_eng_op_t *op)
{
    const int8_t *a = (const int8_t *)tfa_eng_cdata(e, tfa_eng_io(e, &op->inputs, 0));
    const int8_t *b = (const int8_t *)tfa_eng_cdata(e, tfa_eng_io(e, &op->inputs, 1));
    const tfa_eng_tensor_t *tout = tfa_eng_io(e, &op->outputs, 0);
    int8_t *out = (int8_t *)tfa_eng_data(e, tout);
    const int32_t oa = op->in_offset, ob = op->in2_offset, oo = op->out_offset;
    const int32_t m1 = op->mult1, m2 = op->mult2, m = op->mult;
    const int s1 = (int)op->shift1, s2 = (int)op->shift2, s = (int)op->shift, ls = (int)op->left_shift;
    for (uint32_t i = 0; i < tout->elements; i++) {
        /* (x + offset) << 20 stays within +-2^28: the products of the reference, no overflow */
        const int32_t sa = tfa_dsp_requantize((int32_t)((uint32_t)(a[i] + oa) << ls), m1, s1);
        const int32_t sb = tfa_dsp_requantize((int32_t)((uint32_t)(b[i] + ob) << ls), m2, s2);
        const int32_t r = tfa_eng_wrap_add(tfa_dsp_requantize(tfa_eng_wrap_add(sa, sb), m, s), oo);
        out[i] = (int8_t)tfa_q_clamp(r, op->act_min, op->act_max);
    }
}
#endif

#if TFA_ENG_OPTIMIZED
const tfa_eng_variant_t tfa_eng_add_dsp = {prv_add_select, prv_add_run};
#endif
#if TFA_ENG_HOST_KERNELS
const tfa_eng_variant_t tfa_eng_add_host = {prv_add_select, prv_add_run};
#endif
