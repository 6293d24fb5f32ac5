/* CONV_2D and DEPTHWISE_CONV_2D, int8 with per-channel multipliers (TFLite reference_integer_ops
 * ConvPerChannel / DepthwiseConvPerChannel arithmetic). NHWC activations; conv filters OHWI,
 * depthwise filters 1HWO with output channel = input channel * depth_multiplier + m. */
#include "engine_internal.h"
#include "quant.h"
#include "tfa/errors.h"

enum { PADDING_SAME = 0, PADDING_VALID = 1 };

/* Largest window extent, stride and padded span accepted: every index expression of the kernels
 * (y0 + dilation * ky, oy * stride - pad, ...) then stays far inside int32. */
#define CONV_MAX_SPAN (1 << 24)

/* Output size and leading padding as TFLite's ComputePaddingHeightWidth, computed in 64 bits from the
 * model's int32 fields (a crafted stride or dilation must not overflow). */
static int prv_geometry(uint8_t padding, int32_t in, int32_t filter, int32_t stride, int32_t dilation,
                        int32_t out, int32_t *pad)
{
    if (stride <= 0 || dilation <= 0 || filter <= 0 || in <= 0 || padding > PADDING_VALID) {
        return -TFA_ERR_MODEL_INVALID;
    }
    const int64_t effective = (int64_t)(filter - 1) * dilation + 1;
    if (effective > CONV_MAX_SPAN || stride > CONV_MAX_SPAN) {
        return -TFA_ERR_MODEL_INVALID;
    }
    const int64_t expect = padding == PADDING_SAME ? ((int64_t)in + stride - 1) / stride
                                                   : ((int64_t)in + stride - effective) / stride;
    if (expect != out || out <= 0) {
        return -TFA_ERR_MODEL_INVALID;
    }
    const int64_t total = (int64_t)(out - 1) * stride + effective - in;
    if (total > CONV_MAX_SPAN) {
        return -TFA_ERR_MODEL_INVALID;
    }
    *pad = total > 0 ? (int32_t)(total / 2) : 0;
    return 0;
}

int tfa_eng_conv_geometry(tfa_eng_op_t *op, uint8_t padding, const tfa_eng_tensor_t *in,
                          const tfa_eng_tensor_t *out)
{
    int rc = prv_geometry(padding, in->dims[1], op->filter_h, op->stride_h, op->dil_h, out->dims[1],
                          &op->pad_h);
    return rc ? rc
              : prv_geometry(padding, in->dims[2], op->filter_w, op->stride_w, op->dil_w, out->dims[2],
                             &op->pad_w);
}

int tfa_eng_prepare_conv(tfa_engine_t *e, tfa_eng_op_t *op, uint32_t options)
{
    tfa_fb_t fb = {e->model, e->model_len};
    const int dw = op->code == TFA_OP_DEPTHWISE_CONV_2D;
    const tfa_eng_tensor_t *in = tfa_eng_io(e, &op->inputs, 0);
    const tfa_eng_tensor_t *f = tfa_eng_io(e, &op->inputs, 1);
    const tfa_eng_tensor_t *bias = tfa_eng_io(e, &op->inputs, 2);
    const tfa_eng_tensor_t *out = tfa_eng_io(e, &op->outputs, 0);
    uint8_t padding = 0;
    uint8_t act = 0;
    int32_t dm = 0;
    int rc = tfa_eng_check(in, TFA_TYPE_INT8, 0);
    rc = rc ? rc : tfa_eng_check(f, TFA_TYPE_INT8, 1);
    rc = rc ? rc : tfa_eng_check(out, TFA_TYPE_INT8, 0);
    rc = rc ? rc : (bias ? tfa_eng_check(bias, TFA_TYPE_INT32, 1) : 0);
    if (rc != 0) {
        return rc;
    }
    if (options == 0) {
        return -TFA_ERR_MODEL_INVALID;
    }
    /* Conv2DOptions: padding, stride_w, stride_h, activation, dilation_w, dilation_h.
     * DepthwiseConv2DOptions: padding, stride_w, stride_h, depth_multiplier, activation, dil_w, dil_h */
    const uint32_t shift = dw ? 1u : 0u;
    rc = tfa_fb_u8(&fb, options, 0, 0, &padding);
    rc = rc ? rc : tfa_fb_i32(&fb, options, 1, 0, &op->stride_w);
    rc = rc ? rc : tfa_fb_i32(&fb, options, 2, 0, &op->stride_h);
    rc = rc ? rc : (dw ? tfa_fb_i32(&fb, options, 3, 0, &dm) : 0);
    rc = rc ? rc : tfa_fb_u8(&fb, options, 3 + shift, 0, &act);
    rc = rc ? rc : tfa_fb_i32(&fb, options, 4 + shift, 1, &op->dil_w);
    rc = rc ? rc : tfa_fb_i32(&fb, options, 5 + shift, 1, &op->dil_h);
    if (rc != 0) {
        return rc;
    }
    if (act > 3) {
        return -TFA_ERR_UNSUPPORTED_OP;
    }
    if (in->rank != 4 || f->rank != 4 || out->rank != 4 || in->dims[0] != out->dims[0]) {
        return -TFA_ERR_MODEL_INVALID;
    }
    const int32_t in_ch = in->dims[3];
    const int32_t out_ch = out->dims[3];
    op->filter_h = f->dims[1];
    op->filter_w = f->dims[2];
    if (dw) {
        if (f->dims[0] != 1 || f->dims[3] != out_ch || in_ch <= 0) {
            return -TFA_ERR_MODEL_INVALID;
        }
        if (dm == 0) {
            dm = out_ch / in_ch;
        }
        /* in_ch * dm in 32 bits used to wrap: a bogus multiplier (4 * 0x40000001 == 4) passed and the
         * kernel indexed filter and output with it */
        uint32_t channels;
        if (dm <= 0 || tfa_eng_mul_u32((uint32_t)in_ch, (uint32_t)dm, &channels) != 0 ||
            channels != (uint32_t)out_ch) {
            return -TFA_ERR_MODEL_INVALID;
        }
        op->depth_mult = dm;
    } else if (f->dims[0] != out_ch || f->dims[3] != in_ch) {
        return f->dims[0] == out_ch ? -TFA_ERR_UNSUPPORTED_OP : -TFA_ERR_MODEL_INVALID; /* grouped */
    }
    if (bias && bias->elements != (uint32_t)out_ch) {
        return -TFA_ERR_MODEL_INVALID;
    }
    rc = tfa_eng_conv_geometry(op, padding, in, out);
    rc = rc ? rc : tfa_eng_channel_multipliers(e, op, in, f, out, (uint32_t)out_ch);
    if (rc != 0) {
        return rc;
    }
    op->in_offset = -in->zero_point;
    op->out_offset = out->zero_point;
    if (tfa_q_activation_range(act, out->scale, out->zero_point, &op->act_min, &op->act_max) != 0) {
        return -TFA_ERR_MODEL_INVALID;
    }
    uint64_t taps = (uint64_t)op->filter_h * (uint64_t)op->filter_w * (dw ? 1u : (uint64_t)in_ch);
    if (taps > TFA_ENG_MAX_TAPS) {
        return -TFA_ERR_UNSUPPORTED_OP;
    }
    e->mac_count += (uint64_t)out->elements * taps;
    return 0;
}

static int32_t prv_requantize(const tfa_eng_op_t *op, const uint8_t *bias, int32_t acc, int32_t c)
{
    if (bias) {
        acc = tfa_eng_wrap_add(acc, tfa_fb_rd_i32(bias + 4u * (uint32_t)c));
    }
    acc = tfa_eng_wrap_add(tfa_q_mul_by_quantized(acc, op->pc_mult[c], op->pc_shift[c]), op->out_offset);
    return tfa_q_clamp(acc, op->act_min, op->act_max);
}

enum { CONV_BLOCK = 32 };

/* Blocks of output channels outermost; per block the whole-filter sums are computed once, so at
 * interior pixels (every tap inside the input) the inner loop is a plain int8 dot product:
 * sum f*(x+offset) = sum f*x + offset*sum f, the same integer as the reference's. At border pixels
 * the sum covers the valid taps only. Tap bounds are checked once per tap, not per channel. */
void tfa_eng_run_conv(const tfa_engine_t *e, const tfa_eng_op_t *op)
{
    const tfa_eng_tensor_t *tin = tfa_eng_io(e, &op->inputs, 0);
    const tfa_eng_tensor_t *tf = tfa_eng_io(e, &op->inputs, 1);
    const tfa_eng_tensor_t *tb = tfa_eng_io(e, &op->inputs, 2);
    const tfa_eng_tensor_t *tout = tfa_eng_io(e, &op->outputs, 0);
    const int8_t *in = (const int8_t *)tfa_eng_cdata(e, tin);
    const int8_t *filter = (const int8_t *)tf->const_data;
    const uint8_t *bias = tb ? tb->const_data : NULL;
    int8_t *out = (int8_t *)tfa_eng_data(e, tout);
    const int32_t in_h = tin->dims[1], in_w = tin->dims[2], in_ch = tin->dims[3];
    const int32_t out_h = tout->dims[1], out_w = tout->dims[2], out_ch = tout->dims[3];
    const int32_t kh = op->filter_h, kw = op->filter_w;
    const int32_t span_h = (kh - 1) * op->dil_h, span_w = (kw - 1) * op->dil_w;
    const int32_t per_filter = kh * kw * in_ch;
    int32_t acc[CONV_BLOCK];
    int32_t fsum[CONV_BLOCK];
    int32_t full[CONV_BLOCK];
    for (int32_t oc0 = 0; oc0 < out_ch; oc0 += CONV_BLOCK) {
        const int32_t n = out_ch - oc0 < CONV_BLOCK ? out_ch - oc0 : CONV_BLOCK;
        for (int32_t j = 0; j < n; j++) {
            const int8_t *pf = filter + (size_t)(oc0 + j) * (size_t)per_filter;
            int32_t s = 0;
            for (int32_t k = 0; k < per_filter; k++) {
                s += pf[k];
            }
            full[j] = s;
        }
        for (int32_t b = 0; b < tin->dims[0]; b++) {
            for (int32_t oy = 0; oy < out_h; oy++) {
                const int32_t y0 = oy * op->stride_h - op->pad_h;
                for (int32_t ox = 0; ox < out_w; ox++) {
                    const int32_t x0 = ox * op->stride_w - op->pad_w;
                    const int interior = y0 >= 0 && y0 + span_h < in_h && x0 >= 0 && x0 + span_w < in_w;
                    for (int32_t j = 0; j < n; j++) {
                        acc[j] = 0;
                        fsum[j] = 0;
                    }
                    for (int32_t ky = 0; ky < kh; ky++) {
                        const int32_t iy = y0 + op->dil_h * ky;
                        if (iy < 0 || iy >= in_h) {
                            continue;
                        }
                        for (int32_t kx = 0; kx < kw; kx++) {
                            const int32_t ix = x0 + op->dil_w * kx;
                            if (ix < 0 || ix >= in_w) {
                                continue;
                            }
                            const int8_t *px = in + tfa_eng_nhwc(b, iy, ix, 0, in_h, in_w, in_ch);
                            for (int32_t j = 0; j < n; j++) {
                                const int8_t *pf = filter + tfa_eng_nhwc(oc0 + j, ky, kx, 0, kh, kw, in_ch);
                                int32_t dot = 0;
                                for (int32_t ic = 0; ic < in_ch; ic++) {
                                    dot += (int32_t)pf[ic] * (int32_t)px[ic];
                                }
                                acc[j] += dot;
                                if (!interior) {
                                    int32_t s = 0;
                                    for (int32_t ic = 0; ic < in_ch; ic++) {
                                        s += pf[ic];
                                    }
                                    fsum[j] += s;
                                }
                            }
                        }
                    }
                    int8_t *po = out + tfa_eng_nhwc(b, oy, ox, oc0, out_h, out_w, out_ch);
                    for (int32_t j = 0; j < n; j++) {
                        const int32_t sum_f = interior ? full[j] : fsum[j];
                        po[j] = (int8_t)prv_requantize(op, bias, acc[j] + sum_f * op->in_offset, oc0 + j);
                    }
                }
            }
        }
    }
}

enum { DW_BLOCK = 32 };

/* Taps outermost, a block of output channels innermost (contiguous in filter and output; the input
 * channel of output channel c is c / depth_multiplier), accumulators on the stack. Same sums as the
 * reference order. Needs depth_multiplier <= DW_BLOCK. */
static void prv_depthwise_blocked(const tfa_engine_t *e, const tfa_eng_op_t *op)
{
    const tfa_eng_tensor_t *tin = tfa_eng_io(e, &op->inputs, 0);
    const tfa_eng_tensor_t *tf = tfa_eng_io(e, &op->inputs, 1);
    const tfa_eng_tensor_t *tb = tfa_eng_io(e, &op->inputs, 2);
    const tfa_eng_tensor_t *tout = tfa_eng_io(e, &op->outputs, 0);
    const int8_t *in = (const int8_t *)tfa_eng_cdata(e, tin);
    const int8_t *filter = (const int8_t *)tf->const_data;
    const uint8_t *bias = tb ? tb->const_data : NULL;
    int8_t *out = (int8_t *)tfa_eng_data(e, tout);
    const int32_t in_h = tin->dims[1], in_w = tin->dims[2], in_ch = tin->dims[3];
    const int32_t out_h = tout->dims[1], out_w = tout->dims[2], out_ch = tout->dims[3];
    const int32_t kh = op->filter_h, kw = op->filter_w, dm = op->depth_mult;
    const int32_t ic_block = DW_BLOCK / dm;
    int32_t acc[DW_BLOCK];
    int32_t fsum[DW_BLOCK];
    for (int32_t b = 0; b < tin->dims[0]; b++) {
        for (int32_t oy = 0; oy < out_h; oy++) {
            const int32_t y0 = oy * op->stride_h - op->pad_h;
            for (int32_t ox = 0; ox < out_w; ox++) {
                const int32_t x0 = ox * op->stride_w - op->pad_w;
                for (int32_t ic0 = 0; ic0 < in_ch; ic0 += ic_block) {
                    const int32_t nic = in_ch - ic0 < ic_block ? in_ch - ic0 : ic_block;
                    const int32_t n = nic * dm;
                    const int32_t oc0 = ic0 * dm;
                    for (int32_t j = 0; j < n; j++) {
                        acc[j] = 0;
                        fsum[j] = 0;
                    }
                    for (int32_t ky = 0; ky < kh; ky++) {
                        const int32_t iy = y0 + op->dil_h * ky;
                        if (iy < 0 || iy >= in_h) {
                            continue;
                        }
                        for (int32_t kx = 0; kx < kw; kx++) {
                            const int32_t ix = x0 + op->dil_w * kx;
                            if (ix < 0 || ix >= in_w) {
                                continue;
                            }
                            const int8_t *px = in + tfa_eng_nhwc(b, iy, ix, ic0, in_h, in_w, in_ch);
                            const int8_t *pf = filter + tfa_eng_nhwc(0, ky, kx, oc0, kh, kw, out_ch);
                            if (dm == 1) {
                                for (int32_t j = 0; j < n; j++) {
                                    acc[j] += (int32_t)pf[j] * (int32_t)px[j];
                                    fsum[j] += pf[j];
                                }
                                continue;
                            }
                            for (int32_t i = 0; i < nic; i++) {
                                const int32_t xv = px[i];
                                for (int32_t m = 0; m < dm; m++) {
                                    acc[i * dm + m] += (int32_t)pf[i * dm + m] * xv;
                                    fsum[i * dm + m] += pf[i * dm + m];
                                }
                            }
                        }
                    }
                    int8_t *po = out + tfa_eng_nhwc(b, oy, ox, oc0, out_h, out_w, out_ch);
                    for (int32_t j = 0; j < n; j++) {
                        po[j] = (int8_t)prv_requantize(op, bias, acc[j] + fsum[j] * op->in_offset, oc0 + j);
                    }
                }
            }
        }
    }
}

void tfa_eng_run_depthwise(const tfa_engine_t *e, const tfa_eng_op_t *op)
{
    if (op->depth_mult <= DW_BLOCK) {
        prv_depthwise_blocked(e, op);
        return;
    }
    const tfa_eng_tensor_t *tin = tfa_eng_io(e, &op->inputs, 0);
    const tfa_eng_tensor_t *tf = tfa_eng_io(e, &op->inputs, 1);
    const tfa_eng_tensor_t *tb = tfa_eng_io(e, &op->inputs, 2);
    const tfa_eng_tensor_t *tout = tfa_eng_io(e, &op->outputs, 0);
    const int8_t *in = (const int8_t *)tfa_eng_cdata(e, tin);
    const int8_t *filter = (const int8_t *)tf->const_data;
    const uint8_t *bias = tb ? tb->const_data : NULL;
    int8_t *out = (int8_t *)tfa_eng_data(e, tout);
    const int32_t in_h = tin->dims[1], in_w = tin->dims[2], in_ch = tin->dims[3];
    const int32_t out_h = tout->dims[1], out_w = tout->dims[2], out_ch = tout->dims[3];
    const int32_t kh = op->filter_h, kw = op->filter_w, dm = op->depth_mult;
    for (int32_t b = 0; b < tin->dims[0]; b++) {
        for (int32_t oy = 0; oy < out_h; oy++) {
            const int32_t y0 = oy * op->stride_h - op->pad_h;
            for (int32_t ox = 0; ox < out_w; ox++) {
                const int32_t x0 = ox * op->stride_w - op->pad_w;
                int8_t *po = out + tfa_eng_nhwc(b, oy, ox, 0, out_h, out_w, out_ch);
                for (int32_t ic = 0; ic < in_ch; ic++) {
                    for (int32_t m = 0; m < dm; m++) {
                        const int32_t oc = ic * dm + m;
                        int32_t acc = 0;
                        for (int32_t ky = 0; ky < kh; ky++) {
                            const int32_t iy = y0 + op->dil_h * ky;
                            if (iy < 0 || iy >= in_h) {
                                continue;
                            }
                            for (int32_t kx = 0; kx < kw; kx++) {
                                const int32_t ix = x0 + op->dil_w * kx;
                                if (ix < 0 || ix >= in_w) {
                                    continue;
                                }
                                int32_t x = in[tfa_eng_nhwc(b, iy, ix, ic, in_h, in_w, in_ch)];
                                int32_t w = filter[tfa_eng_nhwc(0, ky, kx, oc, kh, kw, out_ch)];
                                acc += w * (x + op->in_offset);
                            }
                        }
                        po[oc] = (int8_t)prv_requantize(op, bias, acc, oc);
                    }
                }
            }
        }
    }
}
