/* MEAN over constant axes, int8, as TFLite Micro: the sum of (x - input zero point) is rescaled by
 * input_scale / output_scale with the 1/count folded into the integer multiplier (also when both
 * quantizations are equal: no truncating division). Up to 4-D. */
#include "engine_internal.h"
#include "quant.h"
#include "tfa/errors.h"

enum { REDUCER_KEEP_DIMS = 0 };

static void prv_dims4(const tfa_eng_tensor_t *t, int32_t d[4])
{
    for (int i = 0; i < 4; i++) {
        int src = i - (4 - (int)t->rank);
        d[i] = src >= 0 ? t->dims[src] : 1;
    }
}

int tfa_eng_prepare_mean(tfa_engine_t *e, tfa_eng_op_t *op, uint32_t options)
{
    tfa_fb_t fb = {e->model, e->model_len};
    const tfa_eng_tensor_t *in = tfa_eng_io(e, &op->inputs, 0);
    const tfa_eng_tensor_t *axes = tfa_eng_io(e, &op->inputs, 1);
    const tfa_eng_tensor_t *out = tfa_eng_io(e, &op->outputs, 0);
    uint8_t keep_dims = 0;
    int rc = tfa_eng_check(in, TFA_TYPE_INT8, 0);
    rc = rc ? rc : tfa_eng_check(out, TFA_TYPE_INT8, 0);
    rc = rc ? rc : tfa_eng_check(axes, TFA_TYPE_INT32, 1);
    rc = rc ? rc : (options ? tfa_fb_u8(&fb, options, REDUCER_KEEP_DIMS, 0, &keep_dims) : 0);
    if (rc != 0) {
        return rc;
    }
    if (in->rank > 4 || in->scale_count == 0 || out->scale_count == 0 || axes->elements == 0) {
        return -TFA_ERR_UNSUPPORTED_OP;
    }
    uint32_t mask = 0; /* reduced dims, in 4-D numbering */
    for (uint32_t i = 0; i < axes->elements; i++) {
        int32_t a = tfa_fb_rd_i32(axes->const_data + 4u * i);
        if (a < 0) {
            a += in->rank;
        }
        if (a < 0 || a >= in->rank) {
            return -TFA_ERR_MODEL_INVALID;
        }
        mask |= 1u << (a + 4 - in->rank);
    }
    int32_t d[4];
    prv_dims4(in, d);
    uint32_t kept = 1;
    int64_t count = 1;
    for (int i = 0; i < 4; i++) {
        if (mask & (1u << i)) {
            count *= d[i];
        } else {
            kept *= (uint32_t)d[i];
        }
    }
    if (out->elements != kept || count <= 0) {
        return -TFA_ERR_MODEL_INVALID;
    }
    if (count > (1 << 22)) {
        return -TFA_ERR_UNSUPPORTED_OP; /* the int32 sums could overflow */
    }
    op->axis = (int32_t)mask;
    op->depth_mult = (int32_t)count;
    op->in_offset = in->zero_point;
    op->out_offset = out->zero_point;
    (void)keep_dims; /* only changes the output shape, checked above through its element count */
    int32_t mult;
    int32_t shift;
    rc = tfa_eng_multiplier((double)in->scale / (double)out->scale, -31, 30, &mult, &shift);
    if (rc != 0) {
        return rc;
    }
    int fold = 63; /* floor(log2(count)), capped as TFLite does */
    while (fold > 0 && !((uint64_t)count >> fold)) {
        fold--;
    }
    fold = fold < 32 ? fold : 32;
    fold = fold < 31 + shift ? fold : 31 + shift;
    op->mult = (int32_t)(((int64_t)mult * ((int64_t)1 << fold)) / count);
    op->shift = shift - fold;
    if (op->shift < -31) {
        return -TFA_ERR_MODEL_INVALID; /* a right shift of 32 or more: undefined in the kernel */
    }
    e->mac_count += in->elements;
    return 0;
}

void tfa_eng_run_mean(const tfa_engine_t *e, const tfa_eng_op_t *op)
{
    const tfa_eng_tensor_t *tin = tfa_eng_io(e, &op->inputs, 0);
    const tfa_eng_tensor_t *tout = tfa_eng_io(e, &op->outputs, 0);
    const int8_t *in = (const int8_t *)tfa_eng_cdata(e, tin);
    int8_t *out = (int8_t *)tfa_eng_data(e, tout);
    int32_t d[4], outer[4], inner[4];
    size_t stride[4];
    prv_dims4(tin, d);
    size_t s = 1;
    for (int i = 3; i >= 0; i--) {
        int reduced = ((uint32_t)op->axis >> i) & 1u;
        outer[i] = reduced ? 1 : d[i];
        inner[i] = reduced ? d[i] : 1;
        stride[i] = s;
        s *= (size_t)d[i];
    }
    size_t o = 0;
    for (int32_t a = 0; a < outer[0]; a++) {
        for (int32_t b = 0; b < outer[1]; b++) {
            for (int32_t c = 0; c < outer[2]; c++) {
                for (int32_t f = 0; f < outer[3]; f++) {
                    int32_t sum = 0;
                    for (int32_t i0 = 0; i0 < inner[0]; i0++) {
                        for (int32_t i1 = 0; i1 < inner[1]; i1++) {
                            for (int32_t i2 = 0; i2 < inner[2]; i2++) {
                                for (int32_t i3 = 0; i3 < inner[3]; i3++) {
                                    size_t at = (size_t)(a + i0) * stride[0] + (size_t)(b + i1) * stride[1] +
                                                (size_t)(c + i2) * stride[2] + (size_t)(f + i3) * stride[3];
                                    sum += in[at];
                                }
                            }
                        }
                    }
                    int32_t v = tfa_eng_wrap_add(
                        tfa_q_mul_by_quantized(sum - op->in_offset * op->depth_mult, op->mult, op->shift),
                        op->out_offset);
                    out[o++] = (int8_t)tfa_q_clamp(v, -128, 127);
                }
            }
        }
    }
}
