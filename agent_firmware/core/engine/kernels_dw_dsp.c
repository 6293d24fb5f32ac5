/* Optimized DEPTHWISE_CONV_2D for the Cortex-M4 DSP extension (dual 16-bit MACs, dsp.h), byte-identical
 * with kernels_conv.c (see kernels_conv_dsp.c for CONV_2D; kernels_conv_dsp.h holds what both share).
 *
 * DEPTHWISE_CONV_2D, multiplier 1: four channels at a time per tap, one word of input and filter each,
 * SMLABB/SMLATT on the sign-extended halves, one group of four channels over all pixels with its
 * requantization parameters set up once. A 3x3 filter (prv_dw3x3_*) also keeps its taps split and
 * doubled, adds the input offset once per window (folded into the bias) and requantizes by the fast
 * path alone when the group's shifts and biases allow it; border windows are read whole all the same,
 * moved inside the input with zero taps where they stick out.
 *
 * DEPTHWISE_CONV_2D, multiplier > 1 (any input depth; micro_speech has depth 1): per input channel,
 * its window is one int16 column, and each SMLAD takes two taps of one output channel: four outputs
 * of the channel at a time with filter bytes (stride out_ch) paired by PKHBT/PKHTB, then two (one
 * halfword of each tap's filter row, split by SXTB16), then one. */
#include "kernels_conv_dsp.h"

#if TFA_ENG_OPTIMIZED

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

static uint32_t prv_dwm_scratch_bytes(int32_t taps, int32_t mult);

static int prv_dw_select(const tfa_engine_t *e, tfa_eng_op_t *op)
{
    (void)e;
    if (op->depth_mult == 1) {
        return 1; /* no scratch */
    }
    const int32_t taps = op->filter_h * op->filter_w;
    if (taps > DSP_MAX_TAPS || op->depth_mult > DSP_MAX_TAPS) {
        return 0;
    }
    const uint32_t bytes = prv_dwm_scratch_bytes(taps, op->depth_mult);
    if (bytes > DSP_MAX_TAPS * 4u) {
        return 0; /* a huge window with a large multiplier: the reference kernel, no scratch */
    }
    op->scratch_bytes = bytes;
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

/* A 3x3 window's filter for four channels, split by SXTB16 / SXTB16 ROR #8 and doubled (kl, kh per tap,
 * read back by LDRD), and fold: 2 x (bias + input offset x the sum of its taps), the constant that
 * replaces adding the input offset at each tap. The sums then come out as the 2 x (sum + bias) that
 * SMMULR takes (see prv_dw_fast). */
typedef struct {
    uint32_t kf[18];
    uint32_t fold[4];
} prv_dw_taps_t;

/* One group of four channels of an op, set up once for all its pixels. fast: a 3x3 filter whose
 * requantization always takes the fast path of tfa_dsp_requantize (every shift a right shift of 1..21,
 * and |bias| + 9 x 128 x 255 < 2^30, so |sum + bias| < 2^30 for any input). */
typedef struct {
    prv_dw_taps_t whole; /* fast: the whole window */
    uint32_t kf[18];     /* fast: as whole.kf */
    uint32_t bias[4];    /* the bias (0 without one); doubled when fast */
    int32_t mult[4];
    int32_t shift[4];
    int32_t round[4];  /* fast: 2^(r - 1) + output offset x 2^r, r = -shift the right shift */
    int32_t rshift[4]; /* fast: r */
    int32_t in_offset, out_offset, act_min, act_max;
    int32_t x_step, x_row; /* input bytes between two taps of a row, between two rows */
    uint32_t off2;         /* the input offset in both halves */
    int fast;
    /* the op's geometry, and batch b's input and output at the group's first channel */
    const tfa_eng_op_t *op;
    int32_t in_h, in_w, out_w, ch;
    const int8_t *in_b;
    int8_t *out_b;
} prv_dw_group_t;

/* Four outputs from their sums: the same requantization as tfa_conv_dsp_out, parameters from the group,
 * the bias added with wrap-around as the reference adds it. */
static inline void prv_dw_out4(const prv_dw_group_t *g, const int32_t acc[4], int8_t *po)
{
    for (int i = 0; i < 4; i++) {
        int32_t v = tfa_dsp_requantize((int32_t)((uint32_t)acc[i] + g->bias[i]), g->mult[i], g->shift[i]);
        v = tfa_eng_wrap_add(v, g->out_offset);
        po[i] = (int8_t)tfa_q_clamp(v, g->act_min, g->act_max);
    }
}

/* Output i of a fast group from x2 = 2 x (sum + bias): tfa_dsp_requantize's fast path with the
 * group's rounding constant and shift (no range checks: the group set-up made them), the output
 * offset added before the shift (in round: (h + o 2^r) >> r = (h >> r) + o, and with |h| < 2^30,
 * round < 2^29 and |o| <= 128, r <= 21 keeps the sum in int32). */
static inline int8_t prv_dw_fast(const prv_dw_group_t *g, int i, int32_t x2)
{
    const int32_t high = tfa_dsp_smmulr(x2, g->mult[i]);
    const int32_t v = (high + g->round[i] + (high >> 31)) >> g->rshift[i];
    return (int8_t)tfa_q_clamp(v, g->act_min, g->act_max);
}

/* One tap of four channels: the input's halves xl, xh, the filter pair (kl, kh) pre-split. */
#define PRV_DW_TAP_SPLIT(xl, xh, kl, kh, a0, a1, a2, a3) \
    do {                                                 \
        (a0) = tfa_dsp_smlabb((xl), (kl), (a0));         \
        (a2) = tfa_dsp_smlatt((xl), (kl), (a2));         \
        (a1) = tfa_dsp_smlabb((xh), (kh), (a1));         \
        (a3) = tfa_dsp_smlatt((xh), (kh), (a3));         \
    } while (0)

/* Tap t of a window read whole from the input: no input offset (folded); 7 instructions for 4 MACs. */
#define PRV_DW_TAP_FULL(p, t)                                                                     \
    do {                                                                                          \
        const uint32_t v_ = tfa_dsp_load4(p);                                                     \
        PRV_DW_TAP_SPLIT(tfa_dsp_sxtb16(v_), tfa_dsp_sxtb16_ror8(v_), kf[2 * (t)], kf[2 * (t) + 1], \
                         a0, a1, a2, a3);                                                         \
    } while (0)

/* GCC's first scheduling pass hoists this kernel's loads ahead and spills its accumulators on the M4
 * (191 -> 165 instructions per 4 outputs without it, bench/inference_m4_trace.py on kws); built
 * without it for the whole file, micro_speech's multiplier path ran 2% more. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__ARM_FEATURE_DSP)
#define PRV_NO_SCHED1 __attribute__((optimize("no-schedule-insns")))
#else
#define PRV_NO_SCHED1
#endif

/* n pixels of a fast group whose 3x3 windows read 9 taps inside the input, along a row or a column:
 * px the first window's top-left tap, po its output, px_next / po_next the steps; taps w. */
static TFA_DSP_NOINLINE PRV_NO_SCHED1 void prv_dw3x3_full(const prv_dw_group_t *g, const prv_dw_taps_t *w,
                                                          const int8_t *px, int32_t px_next, int8_t *po,
                                                          int32_t po_next, int32_t n)
{
    const uint32_t *kf = w->kf;
    const int32_t x_step = g->x_step, x_row = g->x_row;
    for (; n > 0; n--, px += px_next, po += po_next) {
        int32_t a0 = (int32_t)w->fold[0], a1 = (int32_t)w->fold[1];
        int32_t a2 = (int32_t)w->fold[2], a3 = (int32_t)w->fold[3];
        const int8_t *p = px;
        PRV_DW_TAP_FULL(p, 0);
        PRV_DW_TAP_FULL(p + x_step, 1);
        PRV_DW_TAP_FULL(p + 2 * x_step, 2);
        p += x_row;
        PRV_DW_TAP_FULL(p, 3);
        PRV_DW_TAP_FULL(p + x_step, 4);
        PRV_DW_TAP_FULL(p + 2 * x_step, 5);
        p += x_row;
        PRV_DW_TAP_FULL(p, 6);
        PRV_DW_TAP_FULL(p + x_step, 7);
        PRV_DW_TAP_FULL(p + 2 * x_step, 8);
        po[0] = prv_dw_fast(g, 0, a0);
        po[1] = prv_dw_fast(g, 1, a1);
        po[2] = prv_dw_fast(g, 2, a2);
        po[3] = prv_dw_fast(g, 3, a3);
    }
}

/* One border pixel of a fast group whose window cannot be read whole (prv_dw_move): the valid taps
 * [ky0, ky1) x [kx0, kx1), px at the first one, the input offset added per tap. */
static TFA_DSP_NOINLINE void prv_dw3x3_part(const prv_dw_group_t *g, const int8_t *px, int32_t ky0,
                                            int32_t ky1, int32_t kx0, int32_t kx1, int8_t *po)
{
    const int32_t x_step = g->x_step, x_row = g->x_row;
    const uint32_t off2 = g->off2;
    int32_t a0 = (int32_t)g->bias[0], a1 = (int32_t)g->bias[1];
    int32_t a2 = (int32_t)g->bias[2], a3 = (int32_t)g->bias[3];
    for (int32_t ky = ky0; ky < ky1; ky++, px += x_row) {
        const int8_t *p = px;
        const uint32_t *kf = g->kf + 2 * (3 * ky + kx0);
        for (int32_t kx = kx0; kx < kx1; kx++, p += x_step, kf += 2) {
            const uint32_t v = tfa_dsp_load4(p);
            const uint32_t xl = tfa_dsp_sadd16(tfa_dsp_sxtb16(v), off2);
            const uint32_t xh = tfa_dsp_sadd16(tfa_dsp_sxtb16_ror8(v), off2);
            PRV_DW_TAP_SPLIT(xl, xh, kf[0], kf[1], a0, a1, a2, a3);
        }
    }
    po[0] = prv_dw_fast(g, 0, a0);
    po[1] = prv_dw_fast(g, 1, a1);
    po[2] = prv_dw_fast(g, 2, a2);
    po[3] = prv_dw_fast(g, 3, a3);
}

/* A border window read whole from the input all the same: on one axis (window start `start`, valid
 * taps [k0, k1) of 3, dilation dil, input size `size`), the start moved by d taps so that its 3 taps
 * lie inside the input; the taps that then fall on no valid one get a zero filter (prv_dw_moved).
 * Returns d, or 3 when no such start exists (the window wider than the input). */
static int32_t prv_dw_move(int32_t start, int32_t dil, int32_t size, int32_t k0, int32_t k1)
{
    const int32_t d = k0 > 0 ? k0 : k1 - 3;
    const int32_t s = start + dil * d;
    return s >= 0 && s + 2 * dil < size ? d : 3;
}

/* The taps of a window moved by (dy, dx) taps whose valid taps are [ky0, ky1) x [kx0, kx1): tap (j, i)
 * is the filter's (j + dy, i + dx) when valid, else 0; fold from the valid taps' sums. */
static void prv_dw_moved(const prv_dw_group_t *g, int32_t dy, int32_t dx, int32_t ky0, int32_t ky1,
                         int32_t kx0, int32_t kx1, prv_dw_taps_t *w)
{
    uint32_t sl = 0, sh = 0; /* the doubled taps' sums, packed as kl, kh (|sum| <= 9 x 256) */
    uint32_t *dst = w->kf;
    for (int32_t ky = dy; ky < dy + 3; ky++) {
        for (int32_t kx = dx; kx < dx + 3; kx++, dst += 2) {
            uint32_t kl = 0, kh = 0;
            if (ky >= ky0 && ky < ky1 && kx >= kx0 && kx < kx1) {
                kl = g->kf[2 * (3 * ky + kx)];
                kh = g->kf[2 * (3 * ky + kx) + 1];
                sl = tfa_dsp_sadd16(sl, kl);
                sh = tfa_dsp_sadd16(sh, kh);
            }
            dst[0] = kl;
            dst[1] = kh;
        }
    }
    const uint32_t off = (uint32_t)g->in_offset;
    w->fold[0] = g->bias[0] + off * (uint32_t)(int32_t)(int16_t)(sl & 0xFFFFu);
    w->fold[1] = g->bias[1] + off * (uint32_t)(int32_t)(int16_t)(sh & 0xFFFFu);
    w->fold[2] = g->bias[2] + off * (uint32_t)((int32_t)sl >> 16);
    w->fold[3] = g->bias[3] + off * (uint32_t)((int32_t)sh >> 16);
}

/* Set up group c (channels c..c+3) of an op with a kh x kw filter. */
static void prv_dw_group(const tfa_eng_op_t *op, const int8_t *filter, const uint8_t *bias, int32_t c,
                         prv_dw_group_t *g)
{
    const int32_t in_w = g->in_w, ch = g->ch;
    g->fast = op->filter_h == 3 && op->filter_w == 3;
    for (int i = 0; i < 4; i++) {
        g->bias[i] = bias ? tfa_dsp_load4(bias + 4u * (uint32_t)(c + i)) : 0u;
        g->mult[i] = op->pc_mult[c + i];
        g->shift[i] = op->pc_shift[c + i];
        const int32_t b = (int32_t)g->bias[i];
        /* ~shift = r - 1 < 21 (1 <= r <= 21, prv_dw_fast); |b| < 2^30 - 2^19 (9 x 128 x 255 < 2^19) */
        g->fast &= (uint32_t)~g->shift[i] < 21u && b > -0x3FF80000 && b < 0x3FF80000;
    }
    g->in_offset = op->in_offset;
    g->out_offset = op->out_offset;
    g->act_min = op->act_min;
    g->act_max = op->act_max;
    g->x_step = op->dil_w * ch;
    g->x_row = op->dil_h * in_w * ch;
    g->off2 = tfa_dsp_pack2(op->in_offset, op->in_offset);
    if (!g->fast) {
        return;
    }
    for (int i = 0; i < 4; i++) {
        g->round[i] = (int32_t)((1u << (uint32_t)~g->shift[i]) +
                                ((uint32_t)op->out_offset << (uint32_t)-g->shift[i]));
        g->rshift[i] = -g->shift[i];
        g->bias[i] += g->bias[i];
    }
    for (int32_t t = 0; t < 9; t++) {
        const uint32_t k = tfa_dsp_load4(filter + (size_t)t * (size_t)ch + (size_t)c);
        const uint32_t kl = tfa_dsp_sxtb16(k), kh = tfa_dsp_sxtb16_ror8(k);
        g->kf[2 * t] = tfa_dsp_sadd16(kl, kl);
        g->kf[2 * t + 1] = tfa_dsp_sadd16(kh, kh);
    }
    prv_dw_moved(g, 0, 0, 0, 3, 0, 3, &g->whole);
}

/* n outputs of a fast group from (oy, ox), along the row or (vertical) the column, whose windows have
 * the same valid taps: read whole (the taps moved, see prv_dw_move) when they fit in the input, else
 * tap by tap. */
static void prv_dw3x3_run(const prv_dw_group_t *g, int32_t oy, int32_t ox, int32_t n, int vertical)
{
    const tfa_eng_op_t *op = g->op;
    const size_t ch = (size_t)g->ch;
    if (n <= 0) {
        return;
    }
    const int32_t y0 = oy * op->stride_h - op->pad_h, x0 = ox * op->stride_w - op->pad_w;
    int32_t ky0, ky1, kx0, kx1;
    prv_tap_range(y0, op->dil_h, 3, g->in_h, &ky0, &ky1);
    prv_tap_range(x0, op->dil_w, 3, g->in_w, &kx0, &kx1);
    if (kx0 == kx1) {
        ky1 = ky0; /* no valid column: all sums 0 */
    }
    const int32_t px_next = (vertical ? op->stride_h * g->in_w : op->stride_w) * g->ch;
    const int32_t po_next = (vertical ? g->out_w : 1) * g->ch;
    int8_t *po = g->out_b + ((size_t)oy * (size_t)g->out_w + (size_t)ox) * ch;
    const int32_t dy = prv_dw_move(y0, op->dil_h, g->in_h, ky0, ky1);
    const int32_t dx = prv_dw_move(x0, op->dil_w, g->in_w, kx0, kx1);
    if (dy == 3 || dx == 3) {
        const int8_t *px = ky1 > ky0 ? g->in_b + ((size_t)(y0 + op->dil_h * ky0) * (size_t)g->in_w +
                                                  (size_t)(x0 + op->dil_w * kx0)) * ch
                                     : g->in_b;
        for (; n > 0; n--, px += px_next, po += po_next) {
            prv_dw3x3_part(g, px, ky0, ky1, kx0, kx1, po);
        }
        return;
    }
    prv_dw_taps_t moved;
    const prv_dw_taps_t *w = &g->whole;
    if (ky0 != 0 || ky1 != 3 || kx0 != 0 || kx1 != 3) {
        prv_dw_moved(g, dy, dx, ky0, ky1, kx0, kx1, &moved);
        w = &moved;
    }
    const int8_t *px =
        g->in_b + ((size_t)(y0 + op->dil_h * dy) * (size_t)g->in_w + (size_t)(x0 + op->dil_w * dx)) * ch;
    prv_dw3x3_full(g, w, px, px_next, po, po_next, n);
}

/* Every output of a fast group (batch g->in_b, g->out_b), in runs of the same valid taps: the inner
 * rows [oy_lo, oy_hi) as a left border column by column, the inner columns [ox_lo, ox_hi) in one run,
 * a right border column by column; the other rows pixel by pixel at their ends. */
static void prv_dw3x3_group(const prv_dw_group_t *g, int32_t oy_lo, int32_t oy_hi, int32_t ox_lo,
                            int32_t ox_hi, int32_t out_h)
{
    for (int32_t oy = 0; oy < out_h; oy++) {
        const int inner_row = oy >= oy_lo && oy < oy_hi;
        if (inner_row && oy > oy_lo) {
            if (ox_lo < ox_hi) { /* the whole windows, straight to the kernel */
                const tfa_eng_op_t *op = g->op;
                const size_t ch = (size_t)g->ch;
                const int32_t y0 = oy * op->stride_h - op->pad_h, x0 = ox_lo * op->stride_w - op->pad_w;
                const int8_t *px = g->in_b + ((size_t)y0 * (size_t)g->in_w + (size_t)x0) * ch;
                int8_t *po = g->out_b + ((size_t)oy * (size_t)g->out_w + (size_t)ox_lo) * ch;
                prv_dw3x3_full(g, &g->whole, px, op->stride_w * g->ch, po, g->ch, ox_hi - ox_lo);
            }
            continue;
        }
        for (int32_t ox = 0; ox < g->out_w; ox++) {
            if (ox == ox_lo) {
                prv_dw3x3_run(g, oy, ox_lo, ox_hi - ox_lo, 0);
                ox = ox_hi - 1;
                continue;
            }
            prv_dw3x3_run(g, oy, ox, inner_row ? oy_hi - oy_lo : 1, inner_row);
        }
    }
}

/* The run [lo, hi) of outputs along an axis whose windows of `taps` taps read them all inside the
 * input (lo = hi = n when none; a run: the windows move by stride). */
static void prv_dw_whole_run(int32_t n, int32_t stride, int32_t pad, int32_t dil, int32_t size, int32_t taps,
                             int32_t *lo, int32_t *hi)
{
    *lo = n;
    *hi = n;
    for (int32_t o = 0; o < n; o++) {
        int32_t k0, k1;
        prv_tap_range(o * stride - pad, dil, taps, size, &k0, &k1);
        if (k0 == 0 && k1 == taps) {
            *lo = *lo < o ? *lo : o;
            *hi = o + 1;
        }
    }
}

/* Multiplier 1: per group of four channels (parameters set up once), every output pixel: a fast group
 * (3x3) through prv_dw3x3_group, the others per pixel with prv_dw_dot4 over the valid taps (the input
 * offset added per tap). */
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
    prv_dw_group_t g;
    g.op = op;
    g.in_h = in_h;
    g.in_w = in_w;
    g.out_w = out_w;
    g.ch = ch;
    int32_t oy_lo = 0, oy_hi = 0, ox_lo = 0, ox_hi = 0;
    if (kh == 3 && kw == 3) {
        prv_dw_whole_run(out_h, op->stride_h, op->pad_h, op->dil_h, in_h, 3, &oy_lo, &oy_hi);
        prv_dw_whole_run(out_w, op->stride_w, op->pad_w, op->dil_w, in_w, 3, &ox_lo, &ox_hi);
    }
    for (int32_t c = 0; c < ch4; c += 4) {
        prv_dw_group(op, filter, bias, c, &g);
        for (int32_t b = 0; b < tin->dims[0]; b++) {
            const int8_t *in_b = in + (size_t)b * (size_t)(in_h * in_w * ch) + c;
            if (g.fast) {
                g.in_b = in_b;
                g.out_b = out + tfa_eng_nhwc(b, 0, 0, c, out_h, out_w, ch);
                prv_dw3x3_group(&g, oy_lo, oy_hi, ox_lo, ox_hi, out_h);
                continue;
            }
            for (int32_t oy = 0; oy < out_h; oy++) {
                const int32_t y0 = oy * op->stride_h - op->pad_h;
                int32_t ky0, ky1;
                prv_tap_range(y0, op->dil_h, kh, in_h, &ky0, &ky1);
                for (int32_t ox = 0; ox < out_w; ox++) {
                    const int32_t x0 = ox * op->stride_w - op->pad_w;
                    int32_t kx0, kx1;
                    prv_tap_range(x0, op->dil_w, kw, in_w, &kx0, &kx1);
                    const int32_t ky_end = kx0 == kx1 ? ky0 : ky1; /* no valid column: all sums 0 */
                    const int32_t nky = ky_end - ky0, nkx = kx1 - kx0;
                    const prv_window_t win = {nky, nkx, g.x_step, g.x_row, ch, kw * ch, g.off2};
                    const int8_t *px0 = nky > 0 ? in_b + ((size_t)(y0 + op->dil_h * ky0) * (size_t)in_w +
                                                          (size_t)(x0 + op->dil_w * kx0)) * (size_t)ch
                                                : in_b;
                    const int8_t *pf0 = filter + tfa_eng_nhwc(0, ky0, kx0, c, kh, kw, ch);
                    int32_t acc[4];
                    prv_dw_dot4(px0, pf0, &win, acc);
                    prv_dw_out4(&g, acc, out + tfa_eng_nhwc(b, oy, ox, c, out_h, out_w, ch));
                }
            }
        }
    }
    for (int32_t c = ch4; c < ch; c++) {
        for (int32_t b = 0; b < tin->dims[0]; b++) {
            for (int32_t oy = 0; oy < out_h; oy++) {
                const int32_t y0 = oy * op->stride_h - op->pad_h;
                int32_t ky0, ky1;
                prv_tap_range(y0, op->dil_h, kh, in_h, &ky0, &ky1);
                for (int32_t ox = 0; ox < out_w; ox++) {
                    const int32_t x0 = ox * op->stride_w - op->pad_w;
                    int32_t kx0, kx1;
                    prv_tap_range(x0, op->dil_w, kw, in_w, &kx0, &kx1);
                    int32_t acc = 0;
                    for (int32_t ky = ky0; ky < ky1; ky++) {
                        const int32_t iy = y0 + op->dil_h * ky;
                        for (int32_t kx = kx0; kx < kx1; kx++) {
                            const int32_t ix = x0 + op->dil_w * kx;
                            acc += (int32_t)filter[tfa_eng_nhwc(0, ky, kx, c, kh, kw, ch)] *
                                   (in[tfa_eng_nhwc(b, iy, ix, c, in_h, in_w, ch)] + op->in_offset);
                        }
                    }
                    out[tfa_eng_nhwc(b, oy, ox, c, out_h, out_w, ch)] = tfa_conv_dsp_out(op, bias, acc, c);
                }
            }
        }
    }
}

/* Column of input channel c for the window at (y0, x0), a window reaching outside the input: taps in
 * natural order, x - zero point, 0 outside ([kx0, kx1) the valid columns); zeroed whole four words at
 * a time (2 x pairs entries rounded up to 8), then the valid part of each valid row copied. */
static TFA_DSP_NOINLINE void prv_dw_column(const tfa_conv_dsp_geom_t *g, const tfa_eng_op_t *op, int32_t y0,
                                           int32_t x0, int32_t kx0, int32_t kx1, int32_t c, int16_t *col)
{
    const int32_t kw = g->kw, ch = g->in_ch, step = op->dil_w * ch;
    const int16_t offset = (int16_t)op->in_offset;
    const uint32_t off2 = tfa_dsp_pack2(offset, offset);
    int32_t n = (g->kh * kw + 1) >> 1; /* words, four per pass: the loop costs as much as the stores */
    for (int16_t *z = col; n > 0; n -= 4, z += 8) {
        tfa_dsp_store_pair(z, 0);
        tfa_dsp_store_pair(z + 2, 0);
        tfa_dsp_store_pair(z + 4, 0);
        tfa_dsp_store_pair(z + 6, 0);
    }
    int32_t ky0, ky1;
    prv_tap_range(y0, op->dil_h, g->kh, g->in_h, &ky0, &ky1);
    if (kx0 == kx1 || ky0 == ky1) {
        return;
    }
    const int8_t *src =
        g->in + tfa_eng_nhwc(0, y0 + op->dil_h * ky0, x0 + op->dil_w * kx0, c, g->in_h, g->in_w, ch);
    const int32_t row_step = op->dil_h * g->in_w * ch, valid = kx1 - kx0;
    int16_t *row = col + ky0 * kw + kx0;
    for (int32_t ky = ky0; ky < ky1; ky++, src += row_step, row += kw) {
        const int8_t *p = src;
        int16_t *dst = row;
        n = valid;
        for (; step == 1 && n >= 4; n -= 4, p += 4, dst += 4) {
            /* four adjacent bytes (1-channel input): (x0, x2), (x1, x3) plus the offset, re-paired */
            const uint32_t v = tfa_dsp_load4(p);
            const uint32_t even = tfa_dsp_sxtab16(off2, v), odd = tfa_dsp_sxtab16_ror8(off2, v);
            tfa_dsp_store_pair(dst, tfa_dsp_pkhbt(even, odd));
            tfa_dsp_store_pair(dst + 2, tfa_dsp_pkhtb(odd, even));
        }
        for (; n > 0; n--, p += step) {
            *dst++ = (int16_t)(*p + offset);
        }
    }
}

/* Requantization of one output of the multiplier path (a dummy: all 0, never stored). */
typedef struct {
    uint32_t bias; /* the sum's start: the bias (0 without one), doubled when fast */
    int32_t mult;
    int32_t shift;         /* general path */
    int32_t round, rshift; /* fast path: as in prv_dw_group_t */
} prv_dwm_q_t;

/* Input channel c of a multiplier > 1 op, set up once for all its pixels (prv_dwm_chan). Its outputs
 * c * mult + 0 .. mult - 1 go in n4 groups of four, then n2 (0 or 1) of two; only the last group can
 * hold dummies (a group of four with three outputs, of two with one). w: per group, per tap pair p,
 * one word per output: (f[2p][o], f[2p + 1][o]) as int16 (0 past the last tap), doubled when fast. */
typedef struct {
    const uint32_t *w;
    const prv_dwm_q_t *q; /* 4 n4 + 2 n2 entries */
    const int32_t *offs;  /* the taps' input offsets (prv_dwm_gather) */
    int16_t *col;         /* the window's column: 2 x pairs entries */
    uint32_t off2;        /* the input offset in both halves */
    int32_t pairs, n4, n2, mult;
    int32_t out_offset, act_min, act_max;
    int fast; /* every output: a right shift of 1..21 and |bias| + taps x 128 x 255 < 2^30 */
} prv_dwm_chan_t;

/* Outputs, dummies included, of one input channel: multiplier rounded up to groups of four and two. */
static int32_t prv_dwm_padded(int32_t mult)
{
    const int32_t rem = mult & 3;
    return (mult & ~3) + (rem == 3 ? 4 : rem != 0 ? 2 : 0);
}

/* Scratch of the multiplier path: one channel's filter pairs and requantization, the taps' input
 * offsets (prv_dwm_gather), the column. */
static uint32_t prv_dwm_scratch_bytes(int32_t taps, int32_t mult)
{
    const uint32_t pairs = (uint32_t)(taps + 1) / 2u, outs = (uint32_t)prv_dwm_padded(mult);
    /* the column rounded up to 4 words (prv_dw_column zeroes 4 at a time) */
    return pairs * outs * 4u + outs * (uint32_t)sizeof(prv_dwm_q_t) + pairs * 8u + (pairs + 3u) / 4u * 16u;
}

/* Column of a window inside the input, src its first tap, offs each tap's byte offset from it (2 x
 * pairs, the one past an odd last tap 0: its filter is 0): pairs of taps, offset added to both. */
static inline void prv_dwm_gather(const int8_t *src, const int32_t *offs, int32_t pairs, uint32_t off2,
                                  int16_t *col)
{
    for (int32_t n = pairs >> 1; n > 0; n--, offs += 4, col += 4) {
        int32_t o0, o1, o2, o3;
        TFA_DSP_LOAD2W(offs, 0, o0, o1);
        TFA_DSP_LOAD2W(offs, 8, o2, o3);
        const uint32_t x0 = tfa_dsp_pkhbt((uint32_t)(int32_t)src[o0], (uint32_t)(int32_t)src[o1]);
        const uint32_t x1 = tfa_dsp_pkhbt((uint32_t)(int32_t)src[o2], (uint32_t)(int32_t)src[o3]);
        tfa_dsp_store_pair(col, tfa_dsp_sadd16(x0, off2));
        tfa_dsp_store_pair(col + 2, tfa_dsp_sadd16(x1, off2));
    }
    if (pairs & 1) {
        const uint32_t x = tfa_dsp_pkhbt((uint32_t)(int32_t)src[offs[0]], (uint32_t)(int32_t)src[offs[1]]);
        tfa_dsp_store_pair(col, tfa_dsp_sadd16(x, off2));
    }
}

/* One output from its sum acc: fast, acc = 2 x (sum + bias) with |sum + bias| < 2^30 (prv_dw_fast's
 * arithmetic); else acc = sum + bias, wrapped as the reference adds it (tfa_conv_dsp_out's). */
static inline int8_t prv_dwm_out(const prv_dwm_q_t *q, int32_t acc, int fast, int32_t out_offset, int32_t lo,
                                 int32_t hi)
{
    int32_t v;
    if (fast) {
        const int32_t high = tfa_dsp_smmulr(acc, q->mult);
        v = (high + q->round + (high >> 31)) >> q->rshift;
    } else {
        v = tfa_eng_wrap_add(tfa_dsp_requantize(acc, q->mult, q->shift), out_offset);
    }
    return (int8_t)tfa_q_clamp(v, lo, hi);
}

/* Tap pair v (x[2p], x[2p + 1]) into four outputs' sums; their filter words at byte offset off of w
 * (word-aligned), two LDRDs. */
#define PRV_DWM_PAIR4(v, w, off, a0, a1, a2, a3) \
    do {                                         \
        uint32_t w0_, w1_, w2_, w3_;             \
        TFA_DSP_LOAD2W(w, off, w0_, w1_);        \
        TFA_DSP_LOAD2W(w, (off) + 8, w2_, w3_);  \
        (a0) = tfa_dsp_smlad(w0_, (v), (a0));    \
        (a1) = tfa_dsp_smlad(w1_, (v), (a1));    \
        (a2) = tfa_dsp_smlad(w2_, (v), (a2));    \
        (a3) = tfa_dsp_smlad(w3_, (v), (a3));    \
    } while (0)

/* Every output of input channel s at one pixel, po its first: col the window's tap pairs (x[2p],
 * x[2p + 1]) with the input offset added, each loaded once per group and taken by one SMLAD per output
 * (two MACs); two pairs per loop pass. fast: s->fast, a constant in each caller. */
#if defined(__GNUC__)
__attribute__((always_inline))
#endif
static inline void prv_dwm_pixel(const prv_dwm_chan_t *s, const int16_t *col, int8_t *po, const int fast)
{
    const uint32_t *w = s->w;
    const prv_dwm_q_t *q = s->q;
    const int32_t pairs = s->pairs, oo = s->out_offset, lo = s->act_min, hi = s->act_max;
    int32_t m = 0;
    for (int32_t g = s->n4; g > 0; g--, q += 4, m += 4) {
        int32_t a0 = (int32_t)q[0].bias, a1 = (int32_t)q[1].bias;
        int32_t a2 = (int32_t)q[2].bias, a3 = (int32_t)q[3].bias;
        const int16_t *x = col;
        for (int32_t n = pairs >> 1; n > 0; n--, x += 4, w += 8) {
            uint32_t v0, v1;
            TFA_DSP_LOAD2W(x, 0, v0, v1);
            PRV_DWM_PAIR4(v0, w, 0, a0, a1, a2, a3);
            PRV_DWM_PAIR4(v1, w, 16, a0, a1, a2, a3);
        }
        if (pairs & 1) {
            const uint32_t v = tfa_dsp_load_pair(x);
            PRV_DWM_PAIR4(v, w, 0, a0, a1, a2, a3);
            w += 4;
        }
        po[m] = prv_dwm_out(&q[0], a0, fast, oo, lo, hi);
        po[m + 1] = prv_dwm_out(&q[1], a1, fast, oo, lo, hi);
        po[m + 2] = prv_dwm_out(&q[2], a2, fast, oo, lo, hi);
        if (m + 3 < s->mult) {
            po[m + 3] = prv_dwm_out(&q[3], a3, fast, oo, lo, hi);
        }
    }
    if (s->n2) {
        int32_t a0 = (int32_t)q[0].bias, a1 = (int32_t)q[1].bias;
        const int16_t *x = col;
        for (int32_t n = pairs; n > 0; n--, x += 2, w += 2) {
            const uint32_t v = tfa_dsp_load_pair(x);
            uint32_t w0, w1;
            TFA_DSP_LOAD2W(w, 0, w0, w1);
            a0 = tfa_dsp_smlad(w0, v, a0);
            a1 = tfa_dsp_smlad(w1, v, a1);
        }
        po[m] = prv_dwm_out(&q[0], a0, fast, oo, lo, hi);
        if (m + 1 < s->mult) {
            po[m + 1] = prv_dwm_out(&q[1], a1, fast, oo, lo, hi);
        }
    }
}

/* n pixels of channel s, windows and outputs moving by src_step and po_step: each window inside the
 * input gathered from src into s->col; src NULL: one pixel whose column s->col already holds. The two
 * requantizations as two functions (a test per output would be reloaded each time). */
#define PRV_DWM_PIXELS(fast)                                                           \
    do {                                                                               \
        for (; n > 0; n--, po += po_step) {                                            \
            if (src) {                                                                 \
                prv_dwm_gather(src, s->offs, s->pairs, s->off2, s->col);               \
                src += src_step;                                                       \
            }                                                                          \
            prv_dwm_pixel(s, s->col, po, fast);                                        \
        }                                                                              \
    } while (0)

static TFA_DSP_NOINLINE void prv_dwm_pixels_fast(const prv_dwm_chan_t *s, const int8_t *src, int32_t src_step,
                                                 int8_t *po, int32_t po_step, int32_t n)
{
    PRV_DWM_PIXELS(1);
}

static TFA_DSP_NOINLINE void prv_dwm_pixels_general(const prv_dwm_chan_t *s, const int8_t *src,
                                                    int32_t src_step, int8_t *po, int32_t po_step, int32_t n)
{
    PRV_DWM_PIXELS(0);
}

/* Set up input channel c (see prv_dwm_chan_t) in w and q, sized by prv_dwm_scratch_bytes. */
static TFA_DSP_NOINLINE void prv_dwm_chan(const tfa_eng_op_t *op, const int8_t *filter, const uint8_t *bias,
                                          int32_t c, int32_t out_ch, uint32_t *w, prv_dwm_q_t *q,
                                          prv_dwm_chan_t *s)
{
    const int32_t mult = op->depth_mult, o0 = c * mult, taps = op->filter_h * op->filter_w;
    const int32_t outs = prv_dwm_padded(mult);
    const int32_t limit = 0x40000000 - taps * 128 * 255; /* taps <= DSP_MAX_TAPS: positive */
    s->w = w;
    s->q = q;
    s->pairs = (taps + 1) / 2;
    s->n4 = (outs - (outs & 2)) / 4;
    s->n2 = (outs & 2) != 0;
    s->mult = mult;
    s->out_offset = op->out_offset;
    s->act_min = op->act_min;
    s->act_max = op->act_max;
    s->fast = 1;
    for (int32_t j = 0; j < outs; j++) {
        prv_dwm_q_t *qj = &q[j];
        qj->bias = 0;
        qj->mult = 0;
        qj->shift = -1;
        if (j < mult) {
            const int32_t o = o0 + j;
            qj->bias = bias ? tfa_dsp_load4(bias + 4u * (uint32_t)o) : 0u;
            qj->mult = op->pc_mult[o];
            qj->shift = op->pc_shift[o];
            const int32_t b = (int32_t)qj->bias;
            s->fast &= (uint32_t)~qj->shift < 21u && b > -limit && b < limit;
        }
    }
    for (int32_t j = 0; j < outs; j++) {
        prv_dwm_q_t *qj = &q[j];
        qj->rshift = -qj->shift;
        qj->round = 0;
        if (s->fast) {
            qj->round = (int32_t)((1u << (uint32_t)~qj->shift) +
                                  ((uint32_t)op->out_offset << (uint32_t)qj->rshift));
            qj->bias += qj->bias;
        }
    }
    const int32_t twice = s->fast ? 2 : 1;
    const size_t row = (size_t)out_ch;
    for (int32_t g0 = 0; g0 < outs; g0 += 4) {
        const int32_t width = outs - g0 >= 4 ? 4 : 2;
        for (int32_t i = 0; i < width; i++) {
            uint32_t *d = w + i;
            if (g0 + i >= mult) { /* a dummy */
                for (int32_t p = 0; p < s->pairs; p++, d += width) {
                    *d = 0;
                }
                continue;
            }
            const int8_t *f = filter + o0 + g0 + i;
            for (int32_t t = 0; t < taps; t += 2, f += 2 * row, d += width) {
                const int32_t hi = t + 1 < taps ? f[row] : 0;
                *d = tfa_dsp_pack2(f[0] * twice, hi * twice);
            }
        }
        w += s->pairs * width;
    }
}

/* Multiplier > 1: input channel by input channel (set up once, prv_dwm_chan), every pixel: its window
 * as one int16 column (prv_dw_column), then all the channel's outputs (prv_dwm_pixel). */
static void prv_dw_run_mult(const tfa_engine_t *e, const tfa_eng_op_t *op)
{
    const tfa_eng_tensor_t *tin = tfa_eng_io(e, &op->inputs, 0);
    const tfa_eng_tensor_t *tf = tfa_eng_io(e, &op->inputs, 1);
    const tfa_eng_tensor_t *tb = tfa_eng_io(e, &op->inputs, 2);
    const tfa_eng_tensor_t *tout = tfa_eng_io(e, &op->outputs, 0);
    const int8_t *filter = (const int8_t *)tf->const_data;
    const uint8_t *bias = tb ? tb->const_data : NULL;
    int8_t *out = (int8_t *)tfa_eng_data(e, tout);
    tfa_conv_dsp_geom_t g = {NULL, tin->dims[1], tin->dims[2], tin->dims[3], op->filter_h, op->filter_w, 0};
    const int32_t out_h = tout->dims[1], out_w = tout->dims[2], out_ch = tout->dims[3];
    const int32_t mult = op->depth_mult, ch = g.in_ch;
    const int32_t taps = g.kh * g.kw, pairs = (taps + 1) / 2;
    /* scratch: 4-byte words (its offset is 16-byte aligned) */
    uint32_t *w = tfa_eng_scratch(e, op);
    prv_dwm_q_t *q = (prv_dwm_q_t *)(void *)(w + pairs * prv_dwm_padded(mult));
    int32_t *offs = (int32_t *)(void *)(q + prv_dwm_padded(mult));
    int16_t *col = (int16_t *)(void *)(offs + 2 * pairs);
    for (int32_t t = 0; t < 2 * pairs; t++) {
        offs[t] = t < taps ? ((t / g.kw) * op->dil_h * g.in_w + (t % g.kw) * op->dil_w) * ch : 0;
    }
    int32_t oy_lo, oy_hi, ox_lo, ox_hi; /* the outputs whose windows lie inside the input */
    prv_dw_whole_run(out_h, op->stride_h, op->pad_h, op->dil_h, g.in_h, g.kh, &oy_lo, &oy_hi);
    prv_dw_whole_run(out_w, op->stride_w, op->pad_w, op->dil_w, g.in_w, g.kw, &ox_lo, &ox_hi);
    prv_dwm_chan_t s;
    s.offs = offs;
    s.col = col;
    s.off2 = tfa_dsp_pack2(op->in_offset, op->in_offset);
    for (int32_t c = 0; c < ch; c++) {
        prv_dwm_chan(op, filter, bias, c, out_ch, w, q, &s);
        void (*const pixels)(const prv_dwm_chan_t *, const int8_t *, int32_t, int8_t *, int32_t, int32_t) =
            s.fast ? prv_dwm_pixels_fast : prv_dwm_pixels_general;
        for (int32_t b = 0; b < tin->dims[0]; b++) {
            g.in = (const int8_t *)tfa_eng_cdata(e, tin) + (size_t)b * (size_t)(g.in_h * g.in_w * ch);
            for (int32_t oy = 0; oy < out_h; oy++) {
                const int32_t y0 = oy * op->stride_h - op->pad_h;
                const int inner_row = oy >= oy_lo && oy < oy_hi;
                int8_t *po = out + tfa_eng_nhwc(b, oy, 0, c * mult, out_h, out_w, out_ch);
                for (int32_t ox = 0; ox < out_w; ox++, po += out_ch) {
                    const int32_t x0 = ox * op->stride_w - op->pad_w;
                    if (inner_row && ox == ox_lo) { /* the run of whole windows */
                        const int8_t *src = g.in + tfa_eng_nhwc(0, y0, x0, c, g.in_h, g.in_w, ch);
                        pixels(&s, src, op->stride_w * ch, po, out_ch, ox_hi - ox_lo);
                        po += (ox_hi - ox_lo - 1) * out_ch;
                        ox = ox_hi - 1;
                        continue;
                    }
                    int32_t kx0, kx1;
                    prv_tap_range(x0, op->dil_w, g.kw, g.in_w, &kx0, &kx1);
                    prv_dw_column(&g, op, y0, x0, kx0, kx1, c, col);
                    pixels(&s, NULL, 0, po, 0, 1);
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
