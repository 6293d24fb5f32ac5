/* TRANSPOSE_CONV, int8 with per-channel multipliers (TFLite reference_integer_ops::TransposeConv
 * arithmetic). TFLite scatters every input into an int32 buffer the size of the output; here each
 * output gathers the inputs that reach it instead: the same int32 sums (integer addition in any
 * order), no scratch buffer. Inputs: output shape, filter OHWI, input NHWC, optional int32 bias. */
#include "engine_internal.h"
#include "quant.h"
#include "tfa/errors.h"

enum { TC_PADDING = 0, TC_STRIDE_W = 1, TC_STRIDE_H = 2, TC_ACTIVATION = 3 };

int tfa_eng_prepare_transpose_conv(tfa_engine_t *e, tfa_eng_op_t *op, uint32_t options)
{
    tfa_fb_t fb = {e->model, e->model_len};
    const tfa_eng_tensor_t *shape = tfa_eng_io(e, &op->inputs, 0);
    const tfa_eng_tensor_t *f = tfa_eng_io(e, &op->inputs, 1);
    const tfa_eng_tensor_t *in = tfa_eng_io(e, &op->inputs, 2);
    const tfa_eng_tensor_t *bias = tfa_eng_io(e, &op->inputs, 3);
    const tfa_eng_tensor_t *out = tfa_eng_io(e, &op->outputs, 0);
    uint8_t padding = 0;
    uint8_t act = 0;
    int rc = tfa_eng_check(shape, TFA_TYPE_INT32, 1);
    rc = rc ? rc : tfa_eng_check(f, TFA_TYPE_INT8, 1);
    rc = rc ? rc : tfa_eng_check(in, TFA_TYPE_INT8, 0);
    rc = rc ? rc : tfa_eng_check(out, TFA_TYPE_INT8, 0);
    rc = rc ? rc : (bias ? tfa_eng_check(bias, TFA_TYPE_INT32, 1) : 0);
    if (rc != 0) {
        return rc;
    }
    if (options == 0) {
        return -TFA_ERR_MODEL_INVALID;
    }
    rc = tfa_fb_u8(&fb, options, TC_PADDING, 0, &padding);
    rc = rc ? rc : tfa_fb_i32(&fb, options, TC_STRIDE_W, 0, &op->stride_w);
    rc = rc ? rc : tfa_fb_i32(&fb, options, TC_STRIDE_H, 0, &op->stride_h);
    rc = rc ? rc : tfa_fb_u8(&fb, options, TC_ACTIVATION, 0, &act);
    if (rc != 0) {
        return rc;
    }
    if (act > 3) {
        return -TFA_ERR_UNSUPPORTED_OP;
    }
    if (in->rank != 4 || f->rank != 4 || out->rank != 4 || shape->elements != 4 ||
        in->dims[0] != out->dims[0] || f->dims[0] != out->dims[3] || f->dims[3] != in->dims[3]) {
        return -TFA_ERR_MODEL_INVALID;
    }
    for (uint32_t d = 0; d < 4; d++) {
        if (tfa_fb_rd_i32(shape->const_data + 4u * d) != out->dims[d]) {
            return -TFA_ERR_MODEL_INVALID;
        }
    }
    const int32_t out_ch = out->dims[3];
    if (bias && bias->elements != (uint32_t)out_ch) {
        return -TFA_ERR_MODEL_INVALID;
    }
    op->filter_h = f->dims[1];
    op->filter_w = f->dims[2];
    op->dil_h = 1;
    op->dil_w = 1;
    /* TFLite pads as a convolution from the output back to the input: the geometry with the two swapped */
    rc = tfa_eng_conv_geometry(op, padding, out, in);
    rc = rc ? rc : tfa_eng_channel_multipliers(e, op, in, f, out, (uint32_t)out_ch);
    if (rc != 0) {
        return rc;
    }
    op->in_offset = -in->zero_point;
    op->out_offset = out->zero_point;
    if (tfa_q_activation_range(act, out->scale, out->zero_point, &op->act_min, &op->act_max) != 0) {
        return -TFA_ERR_MODEL_INVALID;
    }
    uint64_t taps = (uint64_t)op->filter_h * (uint64_t)op->filter_w * (uint64_t)in->dims[3];
    if (taps > TFA_ENG_MAX_TAPS) {
        return -TFA_ERR_UNSUPPORTED_OP;
    }
    e->mac_count += (uint64_t)in->elements * (uint64_t)op->filter_h * (uint64_t)op->filter_w * (uint64_t)out_ch;
    return 0;
}

void tfa_eng_run_transpose_conv(const tfa_engine_t *e, const tfa_eng_op_t *op)
{
    const tfa_eng_tensor_t *tf = tfa_eng_io(e, &op->inputs, 1);
    const tfa_eng_tensor_t *tin = tfa_eng_io(e, &op->inputs, 2);
    const tfa_eng_tensor_t *tb = tfa_eng_io(e, &op->inputs, 3);
    const tfa_eng_tensor_t *tout = tfa_eng_io(e, &op->outputs, 0);
    const int8_t *in = (const int8_t *)tfa_eng_cdata(e, tin);
    const int8_t *filter = (const int8_t *)tf->const_data;
    const uint8_t *bias = tb ? tb->const_data : NULL;
    int8_t *out = (int8_t *)tfa_eng_data(e, tout);
    const int32_t ih = tin->dims[1], iw = tin->dims[2], ic = tin->dims[3];
    const int32_t oh = tout->dims[1], ow = tout->dims[2], oc = tout->dims[3];
    const int32_t kh = op->filter_h, kw = op->filter_w;
    for (int32_t b = 0; b < tout->dims[0]; b++) {
        for (int32_t oy = 0; oy < oh; oy++) {
            for (int32_t ox = 0; ox < ow; ox++) {
                for (int32_t c = 0; c < oc; c++) {
                    int32_t acc = 0;
                    for (int32_t ky = 0; ky < kh; ky++) {
                        /* input row iy reaches oy through tap ky when iy * stride - pad + ky == oy */
                        const int32_t ty = oy + op->pad_h - ky;
                        if (ty < 0 || ty % op->stride_h != 0 || ty / op->stride_h >= ih) {
                            continue;
                        }
                        for (int32_t kx = 0; kx < kw; kx++) {
                            const int32_t tx = ox + op->pad_w - kx;
                            if (tx < 0 || tx % op->stride_w != 0 || tx / op->stride_w >= iw) {
                                continue;
                            }
                            const int8_t *px = in + tfa_eng_nhwc(b, ty / op->stride_h, tx / op->stride_w, 0, ih, iw, ic);
                            const int8_t *pf = filter + tfa_eng_nhwc(c, ky, kx, 0, kh, kw, ic);
                            for (int32_t i = 0; i < ic; i++) {
                                acc += ((int32_t)px[i] + op->in_offset) * (int32_t)pf[i];
                            }
                        }
                    }
                    if (bias) {
                        acc = tfa_eng_wrap_add(acc, tfa_fb_rd_i32(bias + 4u * (uint32_t)c));
                    }
                    acc = tfa_eng_wrap_add(tfa_q_mul_by_quantized(acc, op->pc_mult[c], op->pc_shift[c]),
                                           op->out_offset);
                    out[tfa_eng_nhwc(b, oy, ox, c, oh, ow, oc)] = (int8_t)tfa_q_clamp(acc, op->act_min, op->act_max);
                }
            }
        }
    }
}
