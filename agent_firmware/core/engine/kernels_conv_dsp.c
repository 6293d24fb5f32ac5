/* Optimized CONV_2D for the Cortex-M4 DSP extension (dual 16-bit MACs, dsp.h),
 * byte-identical with kernels_conv.c: every output gets the same int32 sum sum f * (x - input zero
 * point) over its valid taps (integer sums do not depend on order and stay far from int32 overflow, see
 * TFA_ENG_MAX_TAPS), then the same requantization.
 *
 * CONV_2D: the receptive field of two output pixels is expanded once into int16 columns holding
 * x - zero point (0 at padding, which then adds nothing), and two output channels x two pixels are
 * accumulated per inner loop: one word of four filter bytes gives, through SXTB16 and SXTB16 ROR #8,
 * the pairs (w0, w2) and (w1, w3), so the columns store each group of four in the order x0 x2 x1 x3
 * (the natural order of SXTB16 applied to the input word, so a 4-aligned channel count costs two
 * instructions per pair to expand). 16 MACs per 8 SMLADs.
 *
 * DEPTHWISE_CONV_2D is in kernels_dw_dsp.c; what both share, in kernels_conv_dsp.h. */
#include "kernels_conv_dsp.h"

#if TFA_ENG_OPTIMIZED

/* Column of output pixel (oy, ox): taps in filter order (ky, kx, channel), value x - zero point, 0
 * outside the input; each group of four stored as x0 x2 x1 x3 (see the top), a tail of taps % 4
 * in natural order. */
static void prv_fill_column(const tfa_conv_dsp_geom_t *g, const tfa_eng_op_t *op, int32_t oy, int32_t ox,
                            int16_t *col)
{
    const int32_t y0 = oy * op->stride_h - op->pad_h;
    const int32_t x0 = ox * op->stride_w - op->pad_w;
    const int32_t ch = g->in_ch;
    const int32_t offset = op->in_offset;
    int16_t *dst = col;
    for (int32_t ky = 0; ky < g->kh; ky++) {
        const int32_t iy = y0 + op->dil_h * ky;
        for (int32_t kx = 0; kx < g->kw; kx++, dst += ch) {
            const int32_t ix = x0 + op->dil_w * kx;
            if (iy < 0 || iy >= g->in_h || ix < 0 || ix >= g->in_w) {
                memset(dst, 0, (size_t)ch * sizeof *dst);
                continue;
            }
            const int8_t *src = g->in + tfa_eng_nhwc(0, iy, ix, 0, g->in_h, g->in_w, ch);
            if ((ch & 3) == 0) {
                for (int32_t c = 0; c < ch; c += 4) {
                    const uint32_t v = tfa_dsp_load4(src + c);
                    tfa_dsp_store_pair(dst + c, tfa_dsp_sadd16(tfa_dsp_sxtb16(v), g->off2));
                    tfa_dsp_store_pair(dst + c + 2, tfa_dsp_sadd16(tfa_dsp_sxtb16_ror8(v), g->off2));
                }
            } else {
                for (int32_t c = 0; c < ch; c++) {
                    dst[c] = (int16_t)(src[c] + offset);
                }
            }
        }
    }
    if ((ch & 3) != 0) {
        /* natural order written above: swap the middle two of each group of four */
        const int32_t k4 = (g->kh * g->kw * ch) & ~3;
        for (int32_t k = 0; k < k4; k += 4) {
            const int16_t t = col[k + 1];
            col[k + 1] = col[k + 2];
            col[k + 2] = t;
        }
    }
}

/* The four sums of filter rows wa, wb with columns c0, c1 over k4 taps (a multiple of 4). */
static TFA_DSP_NOINLINE void prv_dot_2x2(const int8_t *wa, const int8_t *wb, const int16_t *c0,
                                         const int16_t *c1, int32_t k4, int32_t acc[4])
{
    int32_t a0 = 0, a1 = 0, b0 = 0, b1 = 0;
    for (int32_t n = k4 >> 2; n > 0; n--) {
        const uint32_t w = tfa_dsp_load4(wa);
        const uint32_t v = tfa_dsp_load4(wb);
        wa += 4;
        wb += 4;
        const uint32_t wl = tfa_dsp_sxtb16(w), wh = tfa_dsp_sxtb16_ror8(w);
        const uint32_t vl = tfa_dsp_sxtb16(v), vh = tfa_dsp_sxtb16_ror8(v);
        uint32_t xl = tfa_dsp_load_pair(c0), xh = tfa_dsp_load_pair(c0 + 2);
        c0 += 4;
        a0 = tfa_dsp_smlad(wl, xl, a0);
        a0 = tfa_dsp_smlad(wh, xh, a0);
        b0 = tfa_dsp_smlad(vl, xl, b0);
        b0 = tfa_dsp_smlad(vh, xh, b0);
        xl = tfa_dsp_load_pair(c1);
        xh = tfa_dsp_load_pair(c1 + 2);
        c1 += 4;
        a1 = tfa_dsp_smlad(wl, xl, a1);
        a1 = tfa_dsp_smlad(wh, xh, a1);
        b1 = tfa_dsp_smlad(vl, xl, b1);
        b1 = tfa_dsp_smlad(vh, xh, b1);
    }
    acc[0] = a0; /* channel a, pixel 0 */
    acc[1] = b0; /* channel b, pixel 0 */
    acc[2] = a1; /* channel a, pixel 1 */
    acc[3] = b1; /* channel b, pixel 1 */
}

static TFA_DSP_NOINLINE int32_t prv_dot_1x1(const int8_t *w, const int16_t *col, int32_t k4, int32_t k)
{
    int32_t acc = 0;
    for (int32_t i = 0; i < k4; i += 4) {
        const uint32_t v = tfa_dsp_load4(w + i);
        acc = tfa_dsp_smlad(tfa_dsp_sxtb16(v), tfa_dsp_load_pair(col + i), acc);
        acc = tfa_dsp_smlad(tfa_dsp_sxtb16_ror8(v), tfa_dsp_load_pair(col + i + 2), acc);
    }
    for (int32_t i = k4; i < k; i++) {
        acc += (int32_t)w[i] * col[i];
    }
    return acc;
}

static int prv_conv_select(const tfa_engine_t *e, tfa_eng_op_t *op)
{
    const tfa_eng_tensor_t *tin = tfa_eng_io(e, &op->inputs, 0);
    const int32_t taps = op->filter_h * op->filter_w * tin->dims[3]; /* <= TFA_ENG_MAX_TAPS */
    if (taps > DSP_MAX_TAPS) {
        return 0;
    }
    op->scratch_bytes = 2u * (uint32_t)taps * (uint32_t)sizeof(int16_t);
    return 1;
}

static void prv_conv_run(const tfa_engine_t *e, const tfa_eng_op_t *op)
{
    const tfa_eng_tensor_t *tin = tfa_eng_io(e, &op->inputs, 0);
    const tfa_eng_tensor_t *tf = tfa_eng_io(e, &op->inputs, 1);
    const tfa_eng_tensor_t *tb = tfa_eng_io(e, &op->inputs, 2);
    const tfa_eng_tensor_t *tout = tfa_eng_io(e, &op->outputs, 0);
    const int8_t *filter = (const int8_t *)tf->const_data;
    const uint8_t *bias = tb ? tb->const_data : NULL;
    tfa_conv_dsp_geom_t g = {NULL, tin->dims[1], tin->dims[2], tin->dims[3], op->filter_h, op->filter_w,
                    tfa_dsp_pack2(op->in_offset, op->in_offset)};
    const int32_t out_w = tout->dims[2], out_ch = tout->dims[3];
    const int32_t pixels = tout->dims[1] * out_w;
    const int32_t k = g.kh * g.kw * g.in_ch;
    const int32_t k4 = k & ~3;
    int16_t *col0 = tfa_eng_scratch(e, op);
    int16_t *col1 = col0 + k;
    for (int32_t b = 0; b < tin->dims[0]; b++) {
        g.in = (const int8_t *)tfa_eng_cdata(e, tin) + (size_t)b * (size_t)(g.in_h * g.in_w * g.in_ch);
        int8_t *out = (int8_t *)tfa_eng_data(e, tout) + (size_t)b * (size_t)pixels * (size_t)out_ch;
        for (int32_t p = 0; p < pixels; p += 2) {
            const int two = p + 1 < pixels;
            prv_fill_column(&g, op, p / out_w, p % out_w, col0);
            if (two) {
                prv_fill_column(&g, op, (p + 1) / out_w, (p + 1) % out_w, col1);
            }
            int8_t *po0 = out + (size_t)p * (size_t)out_ch;
            int8_t *po1 = po0 + out_ch;
            int32_t oc = 0;
            for (; two && oc + 1 < out_ch; oc += 2) {
                const int8_t *wa = filter + (size_t)oc * (size_t)k;
                const int8_t *wb = wa + k;
                int32_t acc[4];
                prv_dot_2x2(wa, wb, col0, col1, k4, acc);
                for (int32_t i = k4; i < k; i++) {
                    acc[0] += (int32_t)wa[i] * col0[i];
                    acc[1] += (int32_t)wb[i] * col0[i];
                    acc[2] += (int32_t)wa[i] * col1[i];
                    acc[3] += (int32_t)wb[i] * col1[i];
                }
                po0[oc] = tfa_conv_dsp_out(op, bias, acc[0], oc);
                po0[oc + 1] = tfa_conv_dsp_out(op, bias, acc[1], oc + 1);
                po1[oc] = tfa_conv_dsp_out(op, bias, acc[2], oc);
                po1[oc + 1] = tfa_conv_dsp_out(op, bias, acc[3], oc + 1);
            }
            for (; oc < out_ch; oc++) {
                const int8_t *w = filter + (size_t)oc * (size_t)k;
                po0[oc] = tfa_conv_dsp_out(op, bias, prv_dot_1x1(w, col0, k4, k), oc);
                if (two) {
                    po1[oc] = tfa_conv_dsp_out(op, bias, prv_dot_1x1(w, col1, k4, k), oc);
                }
            }
        }
    }
}

const tfa_eng_variant_t tfa_eng_conv_dsp = {prv_conv_select, prv_conv_run};

#endif
