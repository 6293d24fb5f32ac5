/* Optimized CONV_2D and DEPTHWISE_CONV_2D for the Cortex-M4 DSP extension (dual 16-bit MACs, dsp.h),
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
 * DEPTHWISE_CONV_2D, multiplier 1: four channels at a time per tap, one word of input and filter each,
 * SMLABB/SMLATT on the sign-extended halves. Multiplier > 1 (any input depth; micro_speech has depth
 * 1): per input channel, its window is one int16 column, and each SMLAD takes two taps of one output
 * channel: four outputs of the channel at a time with filter bytes (stride out_ch) paired by
 * PKHBT/PKHTB, then two (one halfword of each tap's filter row, split by SXTB16), then one. */
#include "engine_internal.h"
#include "quant.h"

#if TFA_ENG_OPTIMIZED

/* Largest patch (taps x input channels) given a scratch column; beyond it the reference kernel runs
 * (two columns of 4096 int16 are 16 KiB of arena). */
#define DSP_MAX_TAPS 4096

static inline int8_t prv_out(const tfa_eng_op_t *op, const uint8_t *bias, int32_t acc, int32_t c)
{
    if (bias) {
        /* one (unaligned-safe) word load: this build is little-endian (dsp.h), as the model's bytes */
        acc = tfa_eng_wrap_add(acc, (int32_t)tfa_dsp_load4(bias + 4u * (uint32_t)c));
    }
    acc = tfa_eng_wrap_add(tfa_dsp_requantize(acc, op->pc_mult[c], op->pc_shift[c]), op->out_offset);
    return (int8_t)tfa_q_clamp(acc, op->act_min, op->act_max);
}

/* Valid tap range [lo, hi) of one window axis starting at input coordinate start. */
static void prv_tap_range(int32_t start, int32_t dil, int32_t taps, int32_t size, int32_t *lo, int32_t *hi)
{
    int32_t l = start < 0 ? (-start + dil - 1) / dil : 0;
    int32_t h = size - start <= 0 ? 0 : (size - start + dil - 1) / dil;
    *lo = l < taps ? l : taps;
    *hi = h < taps ? h : taps;
    if (*hi < *lo) {
        *hi = *lo;
    }
}

typedef struct {
    const int8_t *in; /* batch b's input */
    int32_t in_h, in_w, in_ch, kh, kw;
    uint32_t off2; /* input offset in both halves */
} prv_geom_t;

/* Column of output pixel (oy, ox): taps in filter order (ky, kx, channel), value x - zero point, 0
 * outside the input; each group of four stored as x0 x2 x1 x3 (see the top), a tail of taps % 4
 * in natural order. */
static void prv_fill_column(const prv_geom_t *g, const tfa_eng_op_t *op, int32_t oy, int32_t ox,
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
    prv_geom_t g = {NULL, tin->dims[1], tin->dims[2], tin->dims[3], op->filter_h, op->filter_w,
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
                po0[oc] = prv_out(op, bias, acc[0], oc);
                po0[oc + 1] = prv_out(op, bias, acc[1], oc + 1);
                po1[oc] = prv_out(op, bias, acc[2], oc);
                po1[oc + 1] = prv_out(op, bias, acc[3], oc + 1);
            }
            for (; oc < out_ch; oc++) {
                const int8_t *w = filter + (size_t)oc * (size_t)k;
                po0[oc] = prv_out(op, bias, prv_dot_1x1(w, col0, k4, k), oc);
                if (two) {
                    po1[oc] = prv_out(op, bias, prv_dot_1x1(w, col1, k4, k), oc);
                }
            }
        }
    }
}

const tfa_eng_variant_t tfa_eng_conv_dsp = {prv_conv_select, prv_conv_run};

/* ---- DEPTHWISE_CONV_2D ---- */

static int prv_dw_select(const tfa_engine_t *e, tfa_eng_op_t *op)
{
    const tfa_eng_tensor_t *tin = tfa_eng_io(e, &op->inputs, 0);
    (void)tin;
    if (op->depth_mult == 1) {
        return 1; /* no scratch */
    }
    const int32_t taps = op->filter_h * op->filter_w;
    if (taps > DSP_MAX_TAPS) {
        return 0;
    }
    op->scratch_bytes = (uint32_t)taps * (uint32_t)sizeof(int16_t);
    return 1;
}

/* The valid part of a depthwise window: rows x cols taps; byte strides between two taps of a row and
 * between two rows, in the input and in the filter; the input offset in both halves. */
typedef struct {
    int32_t rows, cols, x_step, x_row, f_step, f_row;
    uint32_t off2;
} prv_window_t;

/* One tap of four adjacent channels: input word v (offset added to both halves of each pair), filter
 * word k; a0..a3 the channels' sums. */
#define PRV_DW_TAP(v, k, off2, a0, a1, a2, a3)                                        \
    do {                                                                             \
        const uint32_t xl_ = tfa_dsp_sadd16(tfa_dsp_sxtb16(v), (off2));              \
        const uint32_t kl_ = tfa_dsp_sxtb16(k);                                      \
        (a0) = tfa_dsp_smlabb(xl_, kl_, (a0));                                       \
        (a2) = tfa_dsp_smlatt(xl_, kl_, (a2));                                       \
        const uint32_t xh_ = tfa_dsp_sadd16(tfa_dsp_sxtb16_ror8(v), (off2));         \
        const uint32_t kh_ = tfa_dsp_sxtb16_ror8(k);                                 \
        (a1) = tfa_dsp_smlabb(xh_, kh_, (a1));                                       \
        (a3) = tfa_dsp_smlatt(xh_, kh_, (a3));                                       \
    } while (0)

/* Sums of four adjacent channels over the window; px, pf point at its first valid tap. Rows of
 * three taps (3x3 windows away from the border) are written out: the per-tap loop count and branch
 * and the per-row reloads cost a third of the MACs' instructions. */
static TFA_DSP_NOINLINE void prv_dw_dot4(const int8_t *px, const int8_t *pf, const prv_window_t *w,
                                         int32_t acc[4])
{
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    const uint32_t off2 = w->off2;
    const int32_t x_step = w->x_step, f_step = w->f_step;
    if (w->cols == 3) {
        const int32_t x_skip = w->x_row - 2 * x_step, f_skip = w->f_row - 2 * f_step;
        for (int32_t r = w->rows; r > 0; r--) {
            uint32_t v = tfa_dsp_load4(px), k = tfa_dsp_load4(pf);
            PRV_DW_TAP(v, k, off2, a0, a1, a2, a3);
            px += x_step;
            pf += f_step;
            v = tfa_dsp_load4(px);
            k = tfa_dsp_load4(pf);
            PRV_DW_TAP(v, k, off2, a0, a1, a2, a3);
            px += x_step;
            pf += f_step;
            v = tfa_dsp_load4(px);
            k = tfa_dsp_load4(pf);
            PRV_DW_TAP(v, k, off2, a0, a1, a2, a3);
            px += x_skip;
            pf += f_skip;
        }
    } else {
        for (int32_t r = 0; r < w->rows; r++) {
            const int8_t *x = px + r * w->x_row;
            const int8_t *f = pf + r * w->f_row;
            for (int32_t n = w->cols; n > 0; n--) {
                const uint32_t v = tfa_dsp_load4(x);
                const uint32_t k = tfa_dsp_load4(f);
                x += x_step;
                f += f_step;
                PRV_DW_TAP(v, k, off2, a0, a1, a2, a3);
            }
        }
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}

/* Multiplier 1: per output pixel, groups of four channels over the valid taps. */
static void prv_dw_run_m1(const tfa_engine_t *e, const tfa_eng_op_t *op)
{
    const tfa_eng_tensor_t *tin = tfa_eng_io(e, &op->inputs, 0);
    const tfa_eng_tensor_t *tf = tfa_eng_io(e, &op->inputs, 1);
    const tfa_eng_tensor_t *tb = tfa_eng_io(e, &op->inputs, 2);
    const tfa_eng_tensor_t *tout = tfa_eng_io(e, &op->outputs, 0);
    const int8_t *in = (const int8_t *)tfa_eng_cdata(e, tin);
    const int8_t *filter = (const int8_t *)tf->const_data;
    const uint8_t *bias = tb ? tb->const_data : NULL;
    int8_t *out = (int8_t *)tfa_eng_data(e, tout);
    const int32_t in_h = tin->dims[1], in_w = tin->dims[2], ch = tin->dims[3];
    /* kernels_conv.c checked the window spans at prepare; empty rows/columns are skipped below */
    const int32_t out_h = tout->dims[1], out_w = tout->dims[2];
    const int32_t kh = op->filter_h, kw = op->filter_w;
    const int32_t ch4 = ch & ~3;
    const uint32_t off2 = tfa_dsp_pack2(op->in_offset, op->in_offset);
    for (int32_t b = 0; b < tin->dims[0]; b++) {
        for (int32_t oy = 0; oy < out_h; oy++) {
            const int32_t y0 = oy * op->stride_h - op->pad_h;
            int32_t ky0, ky1;
            prv_tap_range(y0, op->dil_h, kh, in_h, &ky0, &ky1);
            for (int32_t ox = 0; ox < out_w; ox++) {
                const int32_t x0 = ox * op->stride_w - op->pad_w;
                int32_t kx0, kx1;
                prv_tap_range(x0, op->dil_w, kw, in_w, &kx0, &kx1);
                const int32_t ky_end = kx0 == kx1 ? ky0 : ky1; /* no valid column: all sums 0 */
                int8_t *po = out + tfa_eng_nhwc(b, oy, ox, 0, out_h, out_w, ch);
                const int32_t nky = ky_end - ky0, nkx = kx1 - kx0;
                const prv_window_t win = {nky, nkx, op->dil_w * ch, op->dil_h * in_w * ch, ch, kw * ch, off2};
                const int8_t *px0 = nky > 0 ? in + tfa_eng_nhwc(b, y0 + op->dil_h * ky0, x0 + op->dil_w * kx0, 0,
                                                                in_h, in_w, ch)
                                            : in;
                const int8_t *pf0 = filter + tfa_eng_nhwc(0, ky0, kx0, 0, kh, kw, ch);
                for (int32_t c = 0; c < ch4; c += 4) {
                    int32_t acc[4];
                    prv_dw_dot4(px0 + c, pf0 + c, &win, acc);
                    po[c] = prv_out(op, bias, acc[0], c);
                    po[c + 1] = prv_out(op, bias, acc[1], c + 1);
                    po[c + 2] = prv_out(op, bias, acc[2], c + 2);
                    po[c + 3] = prv_out(op, bias, acc[3], c + 3);
                }
                for (int32_t c = ch4; c < ch; c++) {
                    int32_t acc = 0;
                    for (int32_t ky = ky0; ky < ky_end; ky++) {
                        const int32_t iy = y0 + op->dil_h * ky;
                        for (int32_t kx = kx0; kx < kx1; kx++) {
                            const int32_t ix = x0 + op->dil_w * kx;
                            acc += (int32_t)filter[tfa_eng_nhwc(0, ky, kx, c, kh, kw, ch)] *
                                   (in[tfa_eng_nhwc(b, iy, ix, c, in_h, in_w, ch)] + op->in_offset);
                        }
                    }
                    po[c] = prv_out(op, bias, acc, c);
                }
            }
        }
    }
}

/* Sums of four adjacent output channels (filter bytes pf[t * row + 0..3]) with column col over taps:
 * SMLAD on two taps at a time, the filter pairs (f[t][o], f[t + 1][o]) assembled with PKHBT/PKHTB. */
static TFA_DSP_NOINLINE void prv_dw1_dot4(const int8_t *pf, size_t row, const int16_t *col, int32_t taps,
                                          int32_t acc[4])
{
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    for (int32_t n = taps >> 1; n > 0; n--) {
        const uint32_t f0 = tfa_dsp_load4(pf), f1 = tfa_dsp_load4(pf + row);
        pf += 2 * row;
        const uint32_t x = tfa_dsp_load_pair(col);
        col += 2;
        const uint32_t l0 = tfa_dsp_sxtb16(f0), l1 = tfa_dsp_sxtb16(f1);
        a0 = tfa_dsp_smlad(tfa_dsp_pkhbt(l0, l1), x, a0);
        a2 = tfa_dsp_smlad(tfa_dsp_pkhtb(l1, l0), x, a2);
        const uint32_t h0 = tfa_dsp_sxtb16_ror8(f0), h1 = tfa_dsp_sxtb16_ror8(f1);
        a1 = tfa_dsp_smlad(tfa_dsp_pkhbt(h0, h1), x, a1);
        a3 = tfa_dsp_smlad(tfa_dsp_pkhtb(h1, h0), x, a3);
    }
    if (taps & 1) {
        const int32_t xv = *col;
        a0 += pf[0] * xv;
        a1 += pf[1] * xv;
        a2 += pf[2] * xv;
        a3 += pf[3] * xv;
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}

/* Two filter bytes f[o], f[o + 1] as the halfword they are. */
static inline uint32_t prv_load2(const int8_t *p)
{
    uint16_t v;
    TFA_DSP_MEMCPY(&v, p, 2);
    return v;
}

/* Sums of two adjacent output channels with column col over taps: the halfwords (f[t][o], f[t][o+1])
 * and (f[t+1][o], f[t+1][o+1]) make one word whose SXTB16 is (f[t][o], f[t+1][o]) and whose SXTB16
 * ROR #8 is (f[t][o+1], f[t+1][o+1]): one SMLAD per output for two taps. */
static TFA_DSP_NOINLINE void prv_dw1_dot2(const int8_t *pf, size_t row, const int16_t *col, int32_t taps,
                                          int32_t acc[2])
{
    int32_t a0 = 0, a1 = 0;
    for (int32_t n = taps >> 1; n > 0; n--) {
        const uint32_t f = prv_load2(pf) | (prv_load2(pf + row) << 16);
        pf += 2 * row;
        const uint32_t x = tfa_dsp_load_pair(col);
        col += 2;
        a0 = tfa_dsp_smlad(tfa_dsp_sxtb16(f), x, a0);
        a1 = tfa_dsp_smlad(tfa_dsp_sxtb16_ror8(f), x, a1);
    }
    if (taps & 1) {
        a0 += pf[0] * *col;
        a1 += pf[1] * *col;
    }
    acc[0] = a0;
    acc[1] = a1;
}

/* One output channel: (f[t][o], f[t+1][o]) packed, one SMLAD per two taps. */
static TFA_DSP_NOINLINE int32_t prv_dw1_dot1(const int8_t *pf, size_t row, const int16_t *col, int32_t taps)
{
    int32_t a = 0;
    for (int32_t n = taps >> 1; n > 0; n--) {
        a = tfa_dsp_smlad(tfa_dsp_pack2(pf[0], pf[row]), tfa_dsp_load_pair(col), a);
        pf += 2 * row;
        col += 2;
    }
    return (taps & 1) ? a + pf[0] * *col : a;
}

/* Column of input channel c for the window at (y0, x0): taps in natural order, x - zero point, 0
 * outside the input ([kx0, kx1) the valid columns); plain loops, not memset calls (a 3x3 window would
 * spend more on the calls than on the copy). */
static void prv_dw_column(const prv_geom_t *g, const tfa_eng_op_t *op, int32_t y0, int32_t x0, int32_t kx0,
                          int32_t kx1, int32_t c, int16_t *col)
{
    const int32_t kw = g->kw, ch = g->in_ch, step = op->dil_w * ch;
    const int16_t offset = (int16_t)op->in_offset;
    for (int32_t ky = 0; ky < g->kh; ky++, col += kw) {
        const int32_t iy = y0 + op->dil_h * ky;
        int32_t kx = 0;
        if (iy >= 0 && iy < g->in_h && kx0 < kx1) {
            for (; kx < kx0; kx++) {
                col[kx] = 0;
            }
            const int8_t *src = g->in + tfa_eng_nhwc(0, iy, x0 + op->dil_w * kx0, c, g->in_h, g->in_w, ch);
            for (; kx < kx1; kx++, src += step) {
                col[kx] = (int16_t)(*src + offset);
            }
        }
        for (; kx < kw; kx++) {
            col[kx] = 0;
        }
    }
}

/* Multiplier > 1: output channel c * mult + m of a pixel is sum over taps t of f[t][c * mult + m] *
 * col_c[t], col_c the window of input channel c. */
static void prv_dw_run_mult(const tfa_engine_t *e, const tfa_eng_op_t *op)
{
    const tfa_eng_tensor_t *tin = tfa_eng_io(e, &op->inputs, 0);
    const tfa_eng_tensor_t *tf = tfa_eng_io(e, &op->inputs, 1);
    const tfa_eng_tensor_t *tb = tfa_eng_io(e, &op->inputs, 2);
    const tfa_eng_tensor_t *tout = tfa_eng_io(e, &op->outputs, 0);
    const int8_t *filter = (const int8_t *)tf->const_data;
    const uint8_t *bias = tb ? tb->const_data : NULL;
    int8_t *out = (int8_t *)tfa_eng_data(e, tout);
    prv_geom_t g = {NULL, tin->dims[1], tin->dims[2], tin->dims[3], op->filter_h, op->filter_w, 0};
    const int32_t out_h = tout->dims[1], out_w = tout->dims[2], out_ch = tout->dims[3];
    const int32_t mult = op->depth_mult, ch = g.in_ch;
    const int32_t taps = g.kh * g.kw;
    const int32_t m4 = mult & ~3;
    const size_t row = (size_t)out_ch; /* filter stride between taps */
    int16_t *col = tfa_eng_scratch(e, op);
    for (int32_t b = 0; b < tin->dims[0]; b++) {
        g.in = (const int8_t *)tfa_eng_cdata(e, tin) + (size_t)b * (size_t)(g.in_h * g.in_w * ch);
        for (int32_t oy = 0; oy < out_h; oy++) {
            const int32_t y0 = oy * op->stride_h - op->pad_h;
            for (int32_t ox = 0; ox < out_w; ox++) {
                const int32_t x0 = ox * op->stride_w - op->pad_w;
                int32_t kx0, kx1;
                prv_tap_range(x0, op->dil_w, g.kw, g.in_w, &kx0, &kx1);
                int8_t *po = out + tfa_eng_nhwc(b, oy, ox, 0, out_h, out_w, out_ch);
                for (int32_t c = 0; c < ch; c++) {
                    prv_dw_column(&g, op, y0, x0, kx0, kx1, c, col);
                    const int32_t o0 = c * mult;
                    const int8_t *pf = filter + o0;
                    int32_t m = 0;
                    for (; m < m4; m += 4) {
                        int32_t acc[4];
                        prv_dw1_dot4(pf + m, row, col, taps, acc);
                        po[o0 + m] = prv_out(op, bias, acc[0], o0 + m);
                        po[o0 + m + 1] = prv_out(op, bias, acc[1], o0 + m + 1);
                        po[o0 + m + 2] = prv_out(op, bias, acc[2], o0 + m + 2);
                        po[o0 + m + 3] = prv_out(op, bias, acc[3], o0 + m + 3);
                    }
                    if (m + 1 < mult) {
                        int32_t acc[2];
                        prv_dw1_dot2(pf + m, row, col, taps, acc);
                        po[o0 + m] = prv_out(op, bias, acc[0], o0 + m);
                        po[o0 + m + 1] = prv_out(op, bias, acc[1], o0 + m + 1);
                        m += 2;
                    }
                    if (m < mult) {
                        po[o0 + m] = prv_out(op, bias, prv_dw1_dot1(pf + m, row, col, taps), o0 + m);
                    }
                }
            }
        }
    }
}

static void prv_dw_run(const tfa_engine_t *e, const tfa_eng_op_t *op)
{
    if (op->depth_mult == 1) {
        prv_dw_run_m1(e, op);
    } else {
        prv_dw_run_mult(e, op);
    }
}

const tfa_eng_variant_t tfa_eng_depthwise_dsp = {prv_dw_select, prv_dw_run};

#endif
