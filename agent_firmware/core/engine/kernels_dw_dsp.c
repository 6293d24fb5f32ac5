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
 * DEPTHWISE_CONV_2D, multiplier > 1 (any input depth; micro_speech and person_detect's first layer have
 * depth 1, multiplier 8): one input channel and pass of up to eight outputs at a time over all pixels,
 * the filter and requantization set up once per pass; the window as raw input bytes (the input offset
 * folded into the bias), four taps per word, SMLAD on its SXTB16 halves (see "Multiplier > 1" below). */
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

/* Multiplier > 1. The input offset is folded into each output's bias (offset x the sum of all its
 * taps' filter values), so a tap outside the input reads the zero point (x + offset = 0) and the window
 * is its raw int8 bytes: a column of taps rounded up to 4 (pad taps with a zero filter), copied a word
 * at a time from a 1-channel input. Four taps t..t+3 are one word, whose SXTB16 and SXTB16 ROR #8 are
 * the pairs (x[t], x[t + 2]) and (x[t + 1], x[t + 3]); the filter of the outputs is set up to match
 * (prv_dwm_pass_set), a word per block of four taps and output. An input channel's outputs go in
 * groups of four (then one of two; only the last can hold dummies), and a pass over all pixels takes
 * one or two groups sharing each pixel's column: two while their filter stays within
 * PRV_DWM_FILTER_BYTES of arena (micro_speech, 80 taps: one; its arena is 592 B below TFLM's). */

#define PRV_DWM_FILTER_BYTES 512u

/* Requantization of one output (a dummy: all 0, never stored). */
typedef struct {
    uint32_t bias;         /* the bias (0 without one) + input offset x the sum of the output's taps */
    int32_t mult, shift;   /* general path */
    int32_t round, rshift; /* fast path: as in prv_dw_group_t */
} prv_dwm_q_t;

/* One pass: n4 groups of four outputs then n2 (0 or 1) of two, outs of them real. w: per group, per
 * block of four taps t = 4k..4k + 3 and pair of outputs (o, o + 1), two words: bytes (f[t][o],
 * f[t][o + 1], f[t + 2][o], f[t + 2][o + 1]) and the same for t + 1, t + 3 (0 past the last tap and
 * for dummies). */
typedef struct {
    const uint32_t *w;
    prv_dwm_q_t q[8];
    int8_t *col; /* the column: 4 x blocks bytes */
    int32_t blocks, n4, n2, outs;
    int32_t out_offset, act_min, act_max;
    int fast; /* every output: a right shift of 1..21 and |bias| + taps x 128 x 255 < 2^30 */
    /* the window: kh rows of kw taps, byte steps between two taps of a row and two rows */
    int32_t kh, kw, step, row_step;
    uint32_t zp4; /* the input zero point in each byte */
} prv_dwm_pass_t;

/* Groups per pass (1 or 2) for a window of `blocks` blocks. */
static int32_t prv_dwm_per_pass(int32_t blocks)
{
    return (uint32_t)blocks * 32u <= PRV_DWM_FILTER_BYTES ? 2 : 1;
}

/* Scratch: a pass's filter (a word per block and output), the column. */
static uint32_t prv_dwm_scratch_bytes(int32_t taps, int32_t mult)
{
    const int32_t blocks = (taps + 3) / 4, padded = mult + (mult & 1);
    const int32_t per_pass = 4 * prv_dwm_per_pass(blocks), outs = padded < per_pass ? padded : per_pass;
    return (uint32_t)blocks * (uint32_t)outs * 4u + (uint32_t)blocks * 4u;
}

/* One row of n taps of the window from p (step bytes apart) into dst. */
static inline int8_t *prv_dwm_row(const int8_t *p, int32_t step, int32_t n, int8_t *dst)
{
    if (step == 1) {
        for (; n >= 4; n -= 4, p += 4, dst += 4) {
            const uint32_t v = tfa_dsp_load4(p);
            TFA_DSP_MEMCPY(dst, &v, 4);
        }
    }
    for (; n > 0; n--, p += step) {
        *dst++ = *p;
    }
    return dst;
}

/* Column of a window inside the input, src its first tap (the fields in locals: the int8 stores
 * may alias them). */
static inline void prv_dwm_gather(const prv_dwm_pass_t *g, const int8_t *src)
{
    int8_t *dst = g->col;
    const int32_t kw = g->kw, step = g->step, row_step = g->row_step;
    for (int32_t ky = g->kh; ky > 0; ky--, src += row_step) {
        dst = prv_dwm_row(src, step, kw, dst);
    }
}

/* Column of a window reaching outside the input (valid taps [ky0, ky1) x [kx0, kx1), src the first):
 * the zero point everywhere, then the valid taps. */
static TFA_DSP_NOINLINE void prv_dwm_border(const prv_dwm_pass_t *g, const int8_t *src, int32_t ky0,
                                            int32_t ky1, int32_t kx0, int32_t kx1)
{
    int8_t *const col = g->col;
    const uint32_t zp4 = g->zp4;
    const int32_t kw = g->kw, step = g->step, row_step = g->row_step;
    int8_t *z = col;
    for (int32_t n = g->blocks; n > 0; n--, z += 4) {
        TFA_DSP_MEMCPY(z, &zp4, 4);
    }
    for (int32_t ky = ky0; ky < ky1 && kx0 < kx1; ky++, src += row_step) {
        prv_dwm_row(src, step, kx1 - kx0, col + ky * kw + kx0);
    }
}

/* One output from its sum acc = sum + bias (wrapped as the reference adds it): fast, |acc| < 2^30
 * and prv_dw_fast's arithmetic on 2 acc; else tfa_conv_dsp_out's. */
static inline int8_t prv_dwm_out(const prv_dwm_q_t *q, int32_t acc, int fast, int32_t out_offset, int32_t lo,
                                 int32_t hi)
{
    int32_t v;
    if (fast) {
        const int32_t high = tfa_dsp_smmulr(acc + acc, q->mult);
        v = (high + q->round + (high >> 31)) >> q->rshift;
    } else {
        v = tfa_eng_wrap_add(tfa_dsp_requantize(acc, q->mult, q->shift), out_offset);
    }
    return (int8_t)tfa_q_clamp(v, lo, hi);
}

/* Outputs o, o + 1 of a block: xe, xo its input pairs, wa, wb the two filter words. */
#define PRV_DWM_BLOCK2(xe, xo, wa, wb, a0, a1)                     \
    do {                                                           \
        (a0) = tfa_dsp_smlad(tfa_dsp_sxtb16(wa), (xe), (a0));      \
        (a1) = tfa_dsp_smlad(tfa_dsp_sxtb16_ror8(wa), (xe), (a1)); \
        (a0) = tfa_dsp_smlad(tfa_dsp_sxtb16(wb), (xo), (a0));      \
        (a1) = tfa_dsp_smlad(tfa_dsp_sxtb16_ror8(wb), (xo), (a1)); \
    } while (0)

/* n pixels of pass g, windows and outputs moving by src_step and po_step: each window inside the
 * input gathered from src; src NULL: one pixel whose column g->col already holds. Four outputs: per
 * block one input word and two LDRDs for 16 MACs. fast: a constant in each caller. */
#if defined(__GNUC__)
__attribute__((always_inline))
#endif
static inline void prv_dwm_pixels(const prv_dwm_pass_t *g, const int8_t *src, int32_t src_step, int8_t *po,
                                  int32_t po_step, int32_t n, const int fast)
{
    const int32_t oo = g->out_offset, lo = g->act_min, hi = g->act_max;
    for (; n > 0; n--, po += po_step) {
        if (src) {
            prv_dwm_gather(g, src);
            src += src_step;
        }
        const uint32_t *w = g->w;
        const prv_dwm_q_t *q = g->q;
        int32_t m = 0;
        for (int32_t k4 = g->n4; k4 > 0; k4--, q += 4, m += 4) {
            int32_t a0 = (int32_t)q[0].bias, a1 = (int32_t)q[1].bias;
            int32_t a2 = (int32_t)q[2].bias, a3 = (int32_t)q[3].bias;
            const int8_t *x = g->col;
            for (int32_t k = g->blocks; k > 0; k--, x += 4, w += 4) {
                const uint32_t v = tfa_dsp_load4(x);
                const uint32_t xe = tfa_dsp_sxtb16(v), xo = tfa_dsp_sxtb16_ror8(v);
                uint32_t wa, wb;
                TFA_DSP_LOAD2W(w, 0, wa, wb);
                PRV_DWM_BLOCK2(xe, xo, wa, wb, a0, a1);
                TFA_DSP_LOAD2W(w, 8, wa, wb);
                PRV_DWM_BLOCK2(xe, xo, wa, wb, a2, a3);
            }
            po[m] = prv_dwm_out(&q[0], a0, fast, oo, lo, hi);
            po[m + 1] = prv_dwm_out(&q[1], a1, fast, oo, lo, hi);
            po[m + 2] = prv_dwm_out(&q[2], a2, fast, oo, lo, hi);
            if (m + 3 < g->outs) {
                po[m + 3] = prv_dwm_out(&q[3], a3, fast, oo, lo, hi);
            }
        }
        if (g->n2) {
            int32_t a0 = (int32_t)q[0].bias, a1 = (int32_t)q[1].bias;
            const int8_t *x = g->col;
            for (int32_t k = g->blocks; k > 0; k--, x += 4, w += 2) {
                const uint32_t v = tfa_dsp_load4(x);
                uint32_t wa, wb;
                TFA_DSP_LOAD2W(w, 0, wa, wb);
                PRV_DWM_BLOCK2(tfa_dsp_sxtb16(v), tfa_dsp_sxtb16_ror8(v), wa, wb, a0, a1);
            }
            po[m] = prv_dwm_out(&q[0], a0, fast, oo, lo, hi);
            if (m + 1 < g->outs) {
                po[m + 1] = prv_dwm_out(&q[1], a1, fast, oo, lo, hi);
            }
        }
    }
}

/* The two requantizations as two functions (a test per output would be reloaded each time). */
static TFA_DSP_NOINLINE void prv_dwm_pixels_fast(const prv_dwm_pass_t *g, const int8_t *src, int32_t src_step,
                                                 int8_t *po, int32_t po_step, int32_t n)
{
    prv_dwm_pixels(g, src, src_step, po, po_step, n, 1);
}

static TFA_DSP_NOINLINE void prv_dwm_pixels_general(const prv_dwm_pass_t *g, const int8_t *src,
                                                    int32_t src_step, int8_t *po, int32_t po_step, int32_t n)
{
    prv_dwm_pixels(g, src, src_step, po, po_step, n, 0);
}

/* Set up a pass over outputs o0.. (g->n4, g->n2, g->outs set) in g and w (sized by
 * prv_dwm_scratch_bytes). */
static TFA_DSP_NOINLINE void prv_dwm_pass_set(const tfa_eng_op_t *op, const int8_t *filter,
                                              const uint8_t *bias, int32_t o0, int32_t out_ch, uint32_t *w,
                                              prv_dwm_pass_t *g)
{
    const int32_t taps = op->filter_h * op->filter_w, width = 4 * g->n4 + 2 * g->n2;
    const int32_t limit = 0x40000000 - taps * 128 * 255; /* taps <= DSP_MAX_TAPS: positive */
    const size_t row = (size_t)out_ch;
    g->w = w;
    g->fast = 1;
    for (int32_t j = 0; j < width; j++) {
        prv_dwm_q_t *q = &g->q[j];
        q->bias = 0;
        q->mult = 0;
        q->shift = -1;
        if (j < g->outs) {
            const int32_t o = o0 + j;
            uint32_t sum = 0;
            for (int32_t t = 0; t < taps; t++) {
                sum += (uint32_t)(int32_t)filter[(size_t)t * row + (size_t)o];
            }
            const uint32_t b = bias ? tfa_dsp_load4(bias + 4u * (uint32_t)o) : 0u;
            q->bias = b + (uint32_t)op->in_offset * sum;
            q->mult = op->pc_mult[o];
            q->shift = op->pc_shift[o];
            g->fast &= (uint32_t)~q->shift < 21u && (int32_t)b > -limit && (int32_t)b < limit;
        }
    }
    for (int32_t j = 0; j < width; j++) {
        prv_dwm_q_t *q = &g->q[j];
        q->rshift = -q->shift;
        q->round = 0;
        if (g->fast) {
            q->round = (int32_t)((1u << (uint32_t)~q->shift) +
                                 ((uint32_t)op->out_offset << (uint32_t)q->rshift));
        }
    }
    for (int32_t m0 = 0; m0 < width; m0 += 4) { /* group by group */
        const int32_t gw = width - m0 >= 4 ? 4 : 2;
        for (int32_t k = 0; k < g->blocks; k++) {
            for (int32_t pair = m0; pair < m0 + gw; pair += 2) {
                const int real0 = pair < g->outs, real1 = pair + 1 < g->outs;
                for (int32_t half = 0; half < 2; half++, w++) { /* taps t = 4k + half and t + 2 */
                    const int32_t t = 4 * k + half;
                    const int8_t *f = filter + (size_t)t * row + (size_t)(o0 + pair);
                    const int lo = t < taps, hi = t + 2 < taps;
                    const uint32_t b0 = lo && real0 ? (uint8_t)f[0] : 0u;
                    const uint32_t b1 = lo && real1 ? (uint8_t)f[1] : 0u;
                    const uint32_t b2 = hi && real0 ? (uint8_t)f[2 * row] : 0u;
                    const uint32_t b3 = hi && real1 ? (uint8_t)f[2 * row + 1] : 0u;
                    *w = b0 | b1 << 8 | b2 << 16 | b3 << 24;
                }
            }
        }
    }
}

/* Multiplier > 1: input channel by input channel, pass by pass (set up once, prv_dwm_pass_set), every
 * pixel: the window's column (gathered in runs inside the input, else prv_dwm_border), then the pass's
 * outputs. */
static void prv_dw_run_mult(const tfa_engine_t *e, const tfa_eng_op_t *op)
{
    const tfa_eng_tensor_t *tin = tfa_eng_io(e, &op->inputs, 0);
    const tfa_eng_tensor_t *tf = tfa_eng_io(e, &op->inputs, 1);
    const tfa_eng_tensor_t *tb = tfa_eng_io(e, &op->inputs, 2);
    const tfa_eng_tensor_t *tout = tfa_eng_io(e, &op->outputs, 0);
    const int8_t *filter = (const int8_t *)tf->const_data;
    const uint8_t *bias = tb ? tb->const_data : NULL;
    int8_t *out = (int8_t *)tfa_eng_data(e, tout);
    const int32_t in_h = tin->dims[1], in_w = tin->dims[2], ch = tin->dims[3];
    const int32_t out_h = tout->dims[1], out_w = tout->dims[2], out_ch = tout->dims[3];
    const int32_t mult = op->depth_mult, taps = op->filter_h * op->filter_w;
    prv_dwm_pass_t g;
    g.blocks = (taps + 3) / 4;
    g.kh = op->filter_h;
    g.kw = op->filter_w;
    g.step = op->dil_w * ch;
    g.row_step = op->dil_h * in_w * ch;
    g.zp4 = 0x01010101u * (uint8_t)(-op->in_offset);
    g.out_offset = op->out_offset;
    g.act_min = op->act_min;
    g.act_max = op->act_max;
    uint32_t *w = tfa_eng_scratch(e, op); /* 16-byte aligned */
    g.col = (int8_t *)(void *)((uint8_t *)w + prv_dwm_scratch_bytes(taps, mult) - (uint32_t)g.blocks * 4u);
    for (int32_t i = 0; i < 4 * g.blocks; i++) {
        g.col[i] = 0; /* the pad taps (a zero filter) */
    }
    const int32_t per_pass = prv_dwm_per_pass(g.blocks), fours = mult / 4 + (mult % 4 == 3);
    int32_t oy_lo, oy_hi, ox_lo, ox_hi; /* the outputs whose windows lie inside the input */
    prv_dw_whole_run(out_h, op->stride_h, op->pad_h, op->dil_h, in_h, g.kh, &oy_lo, &oy_hi);
    prv_dw_whole_run(out_w, op->stride_w, op->pad_w, op->dil_w, in_w, g.kw, &ox_lo, &ox_hi);
    for (int32_t c = 0; c < ch; c++) {
        for (int32_t k = 0, m = 0; m < mult; k += per_pass) { /* groups k.. of the channel */
            g.n4 = fours - k < per_pass ? fours - k : per_pass;
            g.n2 = g.n4 < per_pass && 4 * fours < mult;
            g.outs = mult - m < 4 * g.n4 + 2 * g.n2 ? mult - m : 4 * g.n4 + 2 * g.n2;
            const int32_t o0 = c * mult + m;
            prv_dwm_pass_set(op, filter, bias, o0, out_ch, w, &g);
            void (*const pixels)(const prv_dwm_pass_t *, const int8_t *, int32_t, int8_t *, int32_t,
                                 int32_t) = g.fast ? prv_dwm_pixels_fast : prv_dwm_pixels_general;
            for (int32_t b = 0; b < tin->dims[0]; b++) {
                const int8_t *in_b =
                    (const int8_t *)tfa_eng_cdata(e, tin) + (size_t)b * (size_t)(in_h * in_w * ch) + c;
                for (int32_t oy = 0; oy < out_h; oy++) {
                    const int32_t y0 = oy * op->stride_h - op->pad_h;
                    const int inner_row = oy >= oy_lo && oy < oy_hi;
                    int32_t ky0, ky1;
                    prv_tap_range(y0, op->dil_h, g.kh, in_h, &ky0, &ky1);
                    int8_t *po = out + tfa_eng_nhwc(b, oy, 0, o0, out_h, out_w, out_ch);
                    for (int32_t ox = 0; ox < out_w; ox++, po += out_ch) {
                        const int32_t x0 = ox * op->stride_w - op->pad_w;
                        if (inner_row && ox == ox_lo) { /* the run of whole windows */
                            const int8_t *src = in_b + ((size_t)y0 * (size_t)in_w + (size_t)x0) * (size_t)ch;
                            pixels(&g, src, op->stride_w * ch, po, out_ch, ox_hi - ox_lo);
                            po += (ox_hi - ox_lo - 1) * out_ch;
                            ox = ox_hi - 1;
                            continue;
                        }
                        int32_t kx0, kx1;
                        prv_tap_range(x0, op->dil_w, g.kw, in_w, &kx0, &kx1);
                        const int8_t *src = in_b;
                        if (ky0 < ky1 && kx0 < kx1) {
                            const int32_t iy = y0 + op->dil_h * ky0, ix = x0 + op->dil_w * kx0;
                            src += ((size_t)iy * (size_t)in_w + (size_t)ix) * (size_t)ch;
                        }
                        prv_dwm_border(&g, src, ky0, ky1, kx0, kx1);
                        pixels(&g, NULL, 0, po, 0, 1);
                    }
                }
            }
            m += g.outs;
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
