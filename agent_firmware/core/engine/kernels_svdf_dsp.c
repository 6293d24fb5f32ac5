/* Optimized int8 SVDF for the Cortex-M4 DSP extension (dsp.h), byte-identical with kernels_svdf.c.
 *
 * The reference shifts the whole state one step back in time (one memmove), writes each filter's
 * newest value, then runs the time stage over the state. Every state row belongs to one filter, so
 * here each filter is done whole before the next: its feature dot product (two filters share each
 * input word: SXTAB16 / SXTAB16 ROR #8 split four input bytes into the pairs (x0, x2) and (x1, x3)
 * with the input offset added, SXTB16 splits the weights the same way, one SMLAD takes two taps), its
 * newest state value, then one pass over its state row that moves each word one element back and
 * feeds it to SMLAD against the time weights (int8 state: SXTAB16 subtracts the state zero point),
 * so the shift costs one store per word instead of a separate byte loop. Unit sums and the output
 * requantization follow the reference. No scratch, no arena beyond the reference's. */
#include "engine_internal.h"
#include "quant.h"

#if TFA_ENG_OPTIMIZED

enum { IN_INPUT = 0, IN_FEATURE = 1, IN_TIME = 2, IN_BIAS = 3, IN_STATE = 4 };

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
/* a + bytes 0 and 2 of x sign-extended, halfword-wise */
static inline uint32_t prv_sxtab16(uint32_t a, uint32_t x)
{
    return (uint32_t)__sxtab16((int16x2_t)a, (int8x4_t)x);
}

/* a + bytes 1 and 3 of x (the ROR #8 operand; arm_acle.h has no rotated form) */
static inline uint32_t prv_sxtab16_ror8(uint32_t a, uint32_t x)
{
    uint32_t r;
    __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(a), "r"(x));
    return r;
}
#else
static inline uint32_t prv_sxtab16(uint32_t a, uint32_t x)
{
    return tfa_dsp_sadd16(a, tfa_dsp_sxtb16(x));
}

static inline uint32_t prv_sxtab16_ror8(uint32_t a, uint32_t x)
{
    return tfa_dsp_sadd16(a, tfa_dsp_sxtb16_ror8(x));
}
#endif

static inline void prv_store4(void *p, uint32_t v)
{
    TFA_DSP_MEMCPY(p, &v, 4);
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

/* Feature dot products of rows ra and rb with the input x (+ offset): out[0], out[1]. */
static TFA_DSP_NOINLINE void prv_dot2(const int8_t *x, const int8_t *ra, const int8_t *rb, uint32_t n,
                                      int32_t off, int32_t *out)
{
    const uint32_t off2 = tfa_dsp_pack2(off, off);
    const uint32_t n4 = n & ~3u;
    int32_t a = 0, b = 0;
    for (uint32_t c = 0; c < n4; c += 4) {
        const uint32_t v = tfa_dsp_load4(x + c);
        const uint32_t xl = prv_sxtab16(off2, v);
        const uint32_t xh = prv_sxtab16_ror8(off2, v);
        const uint32_t wa = tfa_dsp_load4(ra + c);
        const uint32_t wb = tfa_dsp_load4(rb + c);
        a = tfa_dsp_smlad(tfa_dsp_sxtb16(wa), xl, a);
        a = tfa_dsp_smlad(tfa_dsp_sxtb16_ror8(wa), xh, a);
        b = tfa_dsp_smlad(tfa_dsp_sxtb16(wb), xl, b);
        b = tfa_dsp_smlad(tfa_dsp_sxtb16_ror8(wb), xh, b);
    }
    for (uint32_t c = n4; c < n; c++) {
        const int32_t xv = x[c] + off;
        a += ra[c] * xv;
        b += rb[c] * xv;
    }
    out[0] = a;
    out[1] = b;
}

static TFA_DSP_NOINLINE int32_t prv_dot1(const int8_t *x, const int8_t *ra, uint32_t n, int32_t off)
{
    const uint32_t off2 = tfa_dsp_pack2(off, off);
    const uint32_t n4 = n & ~3u;
    int32_t a = 0;
    for (uint32_t c = 0; c < n4; c += 4) {
        const uint32_t v = tfa_dsp_load4(x + c);
        const uint32_t wa = tfa_dsp_load4(ra + c);
        a = tfa_dsp_smlad(tfa_dsp_sxtb16(wa), prv_sxtab16(off2, v), a);
        a = tfa_dsp_smlad(tfa_dsp_sxtb16_ror8(wa), prv_sxtab16_ror8(off2, v), a);
    }
    for (uint32_t c = n4; c < n; c++) {
        a += ra[c] * (x[c] + off);
    }
    return a;
}

/* One int8 state row s[0..m-1] of one filter: moved one step back in time with `newest` (the stored
 * byte) as its last element, and the time sum w[j] * (s[j] - zp) over the moved row (int32, wrapping
 * like TFLM's). A word loaded from s + j + 1 is stored at s + j before the next load, which reads
 * further on: the move is safe in place. */
static TFA_DSP_NOINLINE int32_t prv_time8(int8_t *s, const int8_t *w, uint32_t m, int32_t newest, int32_t zp)
{
    const uint32_t nzp2 = tfa_dsp_pack2(-zp, -zp);
    int32_t acc = 0;
    uint32_t j = 0;
    for (; j + 4u < m; j += 4u) { /* s[j+1..j+4]: old values only */
        const uint32_t v = tfa_dsp_load4(s + j + 1u);
        prv_store4(s + j, v);
        const uint32_t wv = tfa_dsp_load4(w + j);
        acc = tfa_dsp_smlad(tfa_dsp_sxtb16(wv), prv_sxtab16(nzp2, v), acc);
        acc = tfa_dsp_smlad(tfa_dsp_sxtb16_ror8(wv), prv_sxtab16_ror8(nzp2, v), acc);
    }
    if (m - j == 4u) { /* the last word: its three newer old values, then the newest */
        const uint32_t v = (tfa_dsp_load4(s + j) >> 8) | ((uint32_t)newest << 24);
        prv_store4(s + j, v);
        const uint32_t wv = tfa_dsp_load4(w + j);
        acc = tfa_dsp_smlad(tfa_dsp_sxtb16(wv), prv_sxtab16(nzp2, v), acc);
        return tfa_dsp_smlad(tfa_dsp_sxtb16_ror8(wv), prv_sxtab16_ror8(nzp2, v), acc);
    }
    for (; j + 1u < m; j++) {
        s[j] = s[j + 1u];
        acc += w[j] * (s[j] - zp);
    }
    s[m - 1u] = (int8_t)newest;
    return acc + w[m - 1u] * ((int8_t)newest - zp);
}

/* The same for an int16 state row (zero point 0) and int16 time weights (bytes w, any alignment). */
static TFA_DSP_NOINLINE int32_t prv_time16(int16_t *s, const uint8_t *w, uint32_t m, int32_t newest)
{
    int32_t acc = 0;
    uint32_t j = 0;
    for (; j + 2u < m; j += 2u) { /* s[j+1], s[j+2]: old values */
        const uint32_t v = tfa_dsp_load_pair(s + j + 1u);
        tfa_dsp_store_pair(s + j, v);
        acc = tfa_dsp_smlad(tfa_dsp_load4(w + 2u * j), v, acc);
    }
    if (m - j == 2u) {
        s[j] = s[j + 1u];
        acc = (int32_t)((uint32_t)acc + (uint32_t)(prv_rd_i16(w + 2u * j) * s[j]));
    }
    s[m - 1u] = (int16_t)newest;
    return (int32_t)((uint32_t)acc + (uint32_t)(prv_rd_i16(w + 2u * (m - 1u)) * (int16_t)newest));
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
    const uint32_t batch = (uint32_t)tin->dims[0], n = (uint32_t)op->filter_w, m = (uint32_t)op->filter_h;
    const uint32_t rank = (uint32_t)op->depth_mult, filters = (uint32_t)op->axis;
    const int32_t zp = op->in2_offset;
    const int32_t lo = wide ? INT16_MIN : INT8_MIN, hi = wide ? INT16_MAX : INT8_MAX;
    for (uint32_t b = 0; b < batch; b++) {
        const int8_t *x = in + (size_t)b * n;
        int8_t *po = out + (size_t)b * (filters / rank);
        uint32_t u = 0, r = 0;
        int32_t acc = 0;
        for (uint32_t f = 0; f < filters; f += 2u) {
            const int8_t *ra = wf + (size_t)f * n;
            int32_t dots[2];
            const uint32_t pair = f + 1u < filters ? 2u : 1u;
            if (pair == 2u) {
                prv_dot2(x, ra, ra + n, n, op->in_offset, dots);
            } else {
                dots[0] = prv_dot1(x, ra, n, op->in_offset);
            }
            for (uint32_t k = 0; k < pair; k++) {
                const uint32_t fk = f + k;
                /* clamped, then offset and narrowed with wrap-around, as the reference */
                const int32_t v = tfa_q_clamp(tfa_dsp_requantize(dots[k], op->mult, op->shift), lo, hi) + zp;
                const size_t row = ((size_t)b * filters + fk) * m;
                int32_t sum;
                if (wide) {
                    sum = prv_time16((int16_t *)(void *)state + row, wt + 2u * (size_t)fk * m, m,
                                     (int16_t)(uint16_t)((uint32_t)v & 0xFFFFu));
                } else {
                    sum = prv_time8((int8_t *)state + row, (const int8_t *)wt + (size_t)fk * m, m,
                                    (int8_t)(uint8_t)((uint32_t)v & 0xFFu), zp);
                }
                if (r == 0) {
                    acc = tfa_fb_rd_i32(bias + 4u * u);
                }
                acc = tfa_eng_wrap_add(acc, sum);
                if (++r == rank) {
                    acc = tfa_eng_wrap_add(tfa_dsp_requantize(acc, op->mult2, op->shift2), op->out_offset);
                    po[u++] = (int8_t)tfa_q_clamp(acc, INT8_MIN, INT8_MAX);
                    r = 0;
                }
            }
        }
    }
}

const tfa_eng_variant_t tfa_eng_svdf_dsp = {prv_svdf_select, prv_svdf_run};

#endif
