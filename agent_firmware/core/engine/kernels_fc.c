/* FULLY_CONNECTED, int8 (TFLite reference_integer_ops::FullyConnected, per-tensor or per-channel). */
#include "engine_internal.h"
#include "quant.h"
#include "tfa/errors.h"

enum { FC_ACTIVATION = 0, FC_WEIGHTS_FORMAT = 1 };

int tfa_eng_prepare_fc(tfa_engine_t *e, tfa_eng_op_t *op, uint32_t options)
{
    tfa_fb_t fb = {e->model, e->model_len};
    const tfa_eng_tensor_t *in = tfa_eng_io(e, &op->inputs, 0);
    const tfa_eng_tensor_t *w = tfa_eng_io(e, &op->inputs, 1);
    const tfa_eng_tensor_t *bias = tfa_eng_io(e, &op->inputs, 2);
    const tfa_eng_tensor_t *out = tfa_eng_io(e, &op->outputs, 0);
    uint8_t act = 0;
    uint8_t format = 0;
    int rc = tfa_eng_check(in, TFA_TYPE_INT8, 0);
    rc = rc ? rc : tfa_eng_check(w, TFA_TYPE_INT8, 1);
    rc = rc ? rc : tfa_eng_check(out, TFA_TYPE_INT8, 0);
    rc = rc ? rc : (bias ? tfa_eng_check(bias, TFA_TYPE_INT32, 1) : 0);
    if (rc == 0 && options != 0) {
        rc = tfa_fb_u8(&fb, options, FC_ACTIVATION, 0, &act);
        rc = rc ? rc : tfa_fb_u8(&fb, options, FC_WEIGHTS_FORMAT, 0, &format);
    }
    if (rc != 0) {
        return rc;
    }
    if (format != 0 || act > 3 || in->scale_count == 0 || out->scale_count == 0 ||
        w->scale_count == 0) {
        return -TFA_ERR_UNSUPPORTED_OP;
    }
    if (w->rank != 2 || out->rank < 1 || w->dims[0] <= 0 || w->dims[1] <= 0) {
        return -TFA_ERR_MODEL_INVALID;
    }
    uint32_t units = (uint32_t)w->dims[0];
    uint32_t depth = (uint32_t)w->dims[1];
    uint32_t batches = in->elements / depth;
    if (depth > TFA_ENG_MAX_TAPS) {
        return -TFA_ERR_UNSUPPORTED_OP;
    }
    /* batches * units in 32 bits could wrap to the output's element count (an out-of-bounds write) */
    uint32_t out_elements;
    if (in->elements % depth != 0 || (uint32_t)out->dims[out->rank - 1] != units ||
        tfa_eng_mul_u32(batches, units, &out_elements) != 0 || out->elements != out_elements ||
        (bias && bias->elements != units)) {
        return -TFA_ERR_MODEL_INVALID;
    }
    if (w->scale_count > 1) {
        if (w->scale_count != units) {
            return -TFA_ERR_MODEL_INVALID;
        }
        rc = tfa_eng_channel_multipliers(e, op, in, w, out, units);
        if (rc != 0) {
            return rc;
        }
    } else {
        /* TFLM's FC widens each scale to double before multiplying (as the per-channel path does);
         * a float product differs in the multiplier's low bits, giving 1-LSB misses (issue 15). */
        double product = (double)in->scale * (double)w->scale;
        rc = tfa_eng_multiplier(product / (double)out->scale, -31, 30, &op->mult, &op->shift);
        if (rc != 0) {
            return rc;
        }
    }
    op->in_offset = -in->zero_point;
    op->in2_offset = -w->zero_point;
    op->out_offset = out->zero_point;
    op->filter_w = (int32_t)depth; /* accumulation depth */
    op->depth_mult = (int32_t)units;
    if (tfa_q_activation_range(act, out->scale, out->zero_point, &op->act_min, &op->act_max) != 0) {
        return -TFA_ERR_MODEL_INVALID;
    }
    e->mac_count += (uint64_t)batches * units * depth;
    return 0;
}

void tfa_eng_run_fc(const tfa_engine_t *e, const tfa_eng_op_t *op)
{
    const tfa_eng_tensor_t *tin = tfa_eng_io(e, &op->inputs, 0);
    const tfa_eng_tensor_t *tw = tfa_eng_io(e, &op->inputs, 1);
    const tfa_eng_tensor_t *tb = tfa_eng_io(e, &op->inputs, 2);
    const tfa_eng_tensor_t *tout = tfa_eng_io(e, &op->outputs, 0);
    const int8_t *in = (const int8_t *)tfa_eng_cdata(e, tin);
    const int8_t *w = (const int8_t *)tw->const_data;
    const uint8_t *bias = tb ? tb->const_data : NULL;
    int8_t *out = (int8_t *)tfa_eng_data(e, tout);
    const uint32_t depth = (uint32_t)op->filter_w;
    const uint32_t units = (uint32_t)op->depth_mult;
    const uint32_t batches = tin->elements / depth;
    for (uint32_t b = 0; b < batches; b++) {
        const int8_t *x = in + (size_t)b * depth;
        for (uint32_t u = 0; u < units; u++) {
            const int8_t *row = w + (size_t)u * depth;
            /* sum (w+wo)(x+xo) = sum w*x + xo*sum w + wo*sum x + n*wo*xo: same integer, and the plain
             * int8 dot product vectorises */
            int32_t dot = 0;
            int32_t wsum = 0;
            int32_t xsum = 0;
            for (uint32_t d = 0; d < depth; d++) {
                dot += (int32_t)row[d] * (int32_t)x[d];
                wsum += row[d];
                xsum += x[d];
            }
            int64_t wide = (int64_t)dot + (int64_t)op->in_offset * wsum + (int64_t)op->in2_offset * xsum +
                           (int64_t)depth * op->in2_offset * op->in_offset;
            int32_t acc = (int32_t)wide; /* fits: depth <= TFA_ENG_MAX_TAPS, offsets within int8 */
            if (bias) {
                acc = tfa_eng_wrap_add(acc, tfa_fb_rd_i32(bias + 4u * u));
            }
            if (op->pc_mult) {
                acc = tfa_q_mul_by_quantized(acc, op->pc_mult[u], op->pc_shift[u]);
            } else {
                acc = tfa_q_mul_by_quantized(acc, op->mult, op->shift);
            }
            acc = tfa_eng_wrap_add(acc, op->out_offset);
            out[(size_t)b * units + u] = (int8_t)tfa_q_clamp(acc, op->act_min, op->act_max);
        }
    }
}
