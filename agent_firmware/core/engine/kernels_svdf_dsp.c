/* Optimized int8 SVDF for the Cortex-M4 DSP extension (dsp.h), byte-identical with kernels_svdf.c.
 *
 * The reference shifts the whole state one step back in time (a byte memmove), writes each filter's
 * newest value into the last element of its row, then runs the time stage over the state. Here, per
 * batch row, two passes without scratch:
 * - features: two filters share each input word (SXTAB16 / SXTAB16 ROR #8 split four input bytes into
 *   the pairs (x0, x2) and (x1, x3) with the input offset added, SXTB16 splits the weights the same
 *   way, one SMLAD takes two taps); each newest value goes into the FIRST element of its row, the one
 *   the shift drops;
 * - time and units: one pass over each row moves every word one element back and feeds it to SMLAD
 *   against the time weights (int8 state: SXTAB16 subtracts the state zero point), the newest value
 *   taken from the first element and put last. The shift costs a store per word instead of a byte
 *   loop, and both passes run over all filters in one call. */
#include "engine_internal.h"
#include "quant.h"

#if TFA_ENG_OPTIMIZED

enum { IN_INPUT = 0, IN_FEATURE = 1, IN_TIME = 2, IN_BIAS = 3, IN_STATE = 4 };

static inline void prv_store4(void *p, uint32_t v)
{
    TFA_DSP_MEMCPY(p, &v, 4);
}

/* the low halfword, signed */
static inline int32_t prv_lo16(uint32_t x)
{
    return (int32_t)(int16_t)(uint16_t)(x & 0xFFFFu);
}

static inline int32_t prv_rd_i16(const uint8_t *p)
{
    int16_t v;
    TFA_DSP_MEMCPY(&v, p, 2);
    return v;
}

/* int16 state only with zero point 0 (what TFLM's int16 models have): the pair loads then feed SMLAD
 * as they are; any other zero point takes the reference kernel. */
static int prv_svdf_select(const tfa_engine_t *e, tfa_eng_op_t *op)
{
    const tfa_eng_tensor_t *state = tfa_eng_io(e, &op->inputs, IN_STATE);
    return state->type == TFA_TYPE_INT8 || op->in2_offset == 0;
}

/* Feature dot products of rows ra and rb with the input x (+ offset packed in off2). */
static inline void prv_dot2(const int8_t *x, const int8_t *ra, const int8_t *rb, uint32_t n, int32_t off,
                            uint32_t off2, int32_t *da, int32_t *db)
{
    const int8_t *end = x + (n & ~3u);
    int32_t a = 0, b = 0;
    while (x != end) {
        const uint32_t v = tfa_dsp_load4(x);
        const uint32_t xl = tfa_dsp_sxtab16(off2, v);
        const uint32_t xh = tfa_dsp_sxtab16_ror8(off2, v);
        const uint32_t wa = tfa_dsp_load4(ra);
        const uint32_t wb = tfa_dsp_load4(rb);
        a = tfa_dsp_smlad(tfa_dsp_sxtb16(wa), xl, a);
        a = tfa_dsp_smlad(tfa_dsp_sxtb16_ror8(wa), xh, a);
        b = tfa_dsp_smlad(tfa_dsp_sxtb16(wb), xl, b);
        b = tfa_dsp_smlad(tfa_dsp_sxtb16_ror8(wb), xh, b);
        x += 4, ra += 4, rb += 4;
    }
    for (uint32_t c = 0; c < (n & 3u); c++) {
        const int32_t xv = x[c] + off;
        a += ra[c] * xv;
        b += rb[c] * xv;
    }
    *da = a;
    *db = b;
}

/* The newest state value of a feature sum: requantized, clamped to the state type, THEN offset by
 * the state zero point and narrowed with wrap-around (the reference's order). */
static inline uint32_t prv_newest(const tfa_eng_op_t *op, int32_t dot, int32_t lo, int32_t hi)
{
    return (uint32_t)(tfa_q_clamp(tfa_dsp_requantize(dot, op->mult, op->shift), lo, hi) + op->in2_offset);
}

/* Features of one batch row: filter f's newest value into element 0 of its row (row f of `state`,
 * m elements of esize bytes). */
static TFA_DSP_NOINLINE void prv_features(const tfa_eng_op_t *op, const int8_t *x, const int8_t *wf,
                                          uint8_t *state, int wide)
{
    const uint32_t n = (uint32_t)op->filter_w, filters = (uint32_t)op->axis;
    const size_t row = (size_t)op->filter_h * (wide ? 2u : 1u);
    const uint32_t off2 = tfa_dsp_pack2(op->in_offset, op->in_offset);
    const int32_t lo = wide ? INT16_MIN : INT8_MIN, hi = wide ? INT16_MAX : INT8_MAX;
    for (uint32_t f = 0; f < filters; f += 2u) {
        const int8_t *ra = wf + (size_t)f * n;
        /* an odd last filter pairs with itself */
        const int8_t *rb = f + 1u < filters ? ra + n : ra;
        int32_t da, db;
        prv_dot2(x, ra, rb, n, op->in_offset, off2, &da, &db);
        const uint32_t va = prv_newest(op, da, lo, hi), vb = prv_newest(op, db, lo, hi);
        uint8_t *sa = state + (size_t)f * row;
        if (wide) {
            ((int16_t *)(void *)sa)[0] = (int16_t)(uint16_t)(va & 0xFFFFu);
        } else {
            sa[0] = (uint8_t)(va & 0xFFu);
        }
        if (f + 1u < filters) {
            if (wide) {
                ((int16_t *)(void *)(sa + row))[0] = (int16_t)(uint16_t)(vb & 0xFFFFu);
            } else {
                sa[row] = (uint8_t)(vb & 0xFFu);
            }
        }
    }
}

/* One int8 state row s[0..m-1] whose element 0 holds the newest value: moved one step back in time
 * with the newest last, and the time sum w[j] * (s[j] - zp) over the moved row (int32, wrapping like
 * TFLM's; nzp2 is -zp in both halfwords). A word loaded from s + 1 is stored at s before the next
 * load, which reads further on: the move is safe in place. */
static TFA_DSP_NOINLINE int32_t prv_row8(int8_t *s, const int8_t *w, uint32_t m, uint32_t nzp2)
{
    const int32_t newest = s[0];
    int8_t *const last = s + m - 1u;
    int32_t acc = 0;
    while (last - s >= 4) { /* s[1..4]: old values only */
        const uint32_t v = tfa_dsp_load4(s + 1);
        prv_store4(s, v);
        const uint32_t wv = tfa_dsp_load4(w);
        acc = tfa_dsp_smlad(tfa_dsp_sxtb16(wv), tfa_dsp_sxtab16(nzp2, v), acc);
        acc = tfa_dsp_smlad(tfa_dsp_sxtb16_ror8(wv), tfa_dsp_sxtab16_ror8(nzp2, v), acc);
        s += 4, w += 4;
    }
    if (last - s == 3) { /* the last word: its three newer elements (its first is moved already, or is
                          * the newest itself when m is 4), then the newest */
        const uint32_t v = (tfa_dsp_load4(s) >> 8) | ((uint32_t)newest << 24);
        prv_store4(s, v);
        const uint32_t wv = tfa_dsp_load4(w);
        acc = tfa_dsp_smlad(tfa_dsp_sxtb16(wv), tfa_dsp_sxtab16(nzp2, v), acc);
        return tfa_dsp_smlad(tfa_dsp_sxtb16_ror8(wv), tfa_dsp_sxtab16_ror8(nzp2, v), acc);
    }
    const int32_t zp = -prv_lo16(nzp2);
    for (; s != last; s++, w++) { /* at most three (m not a multiple of 4) */
        s[0] = s[1];
        acc = tfa_eng_wrap_add(acc, w[0] * (s[0] - zp));
    }
    *last = (int8_t)newest;
    return tfa_eng_wrap_add(acc, w[0] * (newest - zp));
}

/* The same for an int16 state row (zero point 0) and int16 time weights (bytes w, any alignment). */
static TFA_DSP_NOINLINE int32_t prv_row16(int16_t *s, const uint8_t *w, uint32_t m)
{
    const int32_t newest = s[0];
    int16_t *const last = s + m - 1u;
    int32_t acc = 0;
    while (last - s >= 2) { /* s[1], s[2]: old values */
        const uint32_t v = tfa_dsp_load_pair(s + 1);
        tfa_dsp_store_pair(s, v);
        acc = tfa_dsp_smlad(tfa_dsp_load4(w), v, acc);
        s += 2, w += 4;
    }
    if (last - s == 1) {
        s[0] = s[1];
        acc = (int32_t)((uint32_t)acc + (uint32_t)(prv_rd_i16(w) * s[0]));
        s++, w += 2;
    }
    *last = (int16_t)newest;
    return (int32_t)((uint32_t)acc + (uint32_t)(prv_rd_i16(w) * newest));
}

/* Time stage and unit sums of one batch row: out[u] from the rank rows of unit u. */
static TFA_DSP_NOINLINE void prv_units(const tfa_eng_op_t *op, uint8_t *state, const uint8_t *wt,
                                       const uint8_t *bias, int8_t *out, int wide)
{
    const uint32_t m = (uint32_t)op->filter_h, rank = (uint32_t)op->depth_mult, filters = (uint32_t)op->axis;
    const size_t row = (size_t)m * (wide ? 2u : 1u);
    const uint32_t nzp2 = tfa_dsp_pack2(-op->in2_offset, -op->in2_offset);
    uint32_t r = 0;
    int32_t acc = 0;
    for (uint32_t f = 0; f < filters; f++, state += row, wt += row) {
        if (r == 0) {
            acc = tfa_fb_rd_i32(bias);
            bias += 4;
        }
        const int32_t sum = wide ? prv_row16((int16_t *)(void *)state, wt, m)
                                 : prv_row8((int8_t *)state, (const int8_t *)wt, m, nzp2);
        acc = tfa_eng_wrap_add(acc, sum);
        if (++r == rank) {
            acc = tfa_eng_wrap_add(tfa_dsp_requantize(acc, op->mult2, op->shift2), op->out_offset);
            *out++ = (int8_t)tfa_q_clamp(acc, INT8_MIN, INT8_MAX);
            r = 0;
        }
    }
}

static void prv_svdf_run(const tfa_engine_t *e, const tfa_eng_op_t *op)
{
    const tfa_eng_tensor_t *tin = tfa_eng_io(e, &op->inputs, IN_INPUT);
    const tfa_eng_tensor_t *tst = tfa_eng_io(e, &op->inputs, IN_STATE);
    const int8_t *in = (const int8_t *)tfa_eng_cdata(e, tin);
    const int8_t *wf = (const int8_t *)tfa_eng_io(e, &op->inputs, IN_FEATURE)->const_data;
    const uint8_t *wt = tfa_eng_io(e, &op->inputs, IN_TIME)->const_data;
    const uint8_t *bias = tfa_eng_io(e, &op->inputs, IN_BIAS)->const_data;
    uint8_t *state = tfa_eng_data(e, tst);
    int8_t *out = (int8_t *)tfa_eng_data(e, tfa_eng_io(e, &op->outputs, 0));
    const int wide = tst->type == TFA_TYPE_INT16;
    const uint32_t batch = (uint32_t)tin->dims[0], filters = (uint32_t)op->axis;
    const size_t rows = (size_t)filters * (size_t)op->filter_h * (wide ? 2u : 1u);
    for (uint32_t b = 0; b < batch; b++) {
        uint8_t *sb = state + (size_t)b * rows;
        prv_features(op, in + (size_t)b * (uint32_t)op->filter_w, wf, sb, wide);
        prv_units(op, sb, wt, bias, out + (size_t)b * (filters / (uint32_t)op->depth_mult), wide);
    }
}

const tfa_eng_variant_t tfa_eng_svdf_dsp = {prv_svdf_select, prv_svdf_run};

#endif
