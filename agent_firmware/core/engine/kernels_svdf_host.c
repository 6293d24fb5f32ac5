/* Host kernel of int8 SVDF (TFA_ENGINE_KERNELS_HOST), byte-identical with kernels_svdf.c.
 *
 * The state moves one step back in time with one memmove, as the reference. Each batch row of the
 * input is copied once into an int16 buffer with its offset added (on the stack); four filters at a
 * time take one pass over it (int16 x int16 -> int32, a loop the compiler vectorises), then each of
 * them writes its newest state value and sums its state row against its time weights, both widened
 * to int16 first so that this loop vectorises too. No arena scratch. */
#include <string.h>

#include "engine_internal.h"
#include "kernels_host.h"
#include "quant.h"

#if TFA_ENG_HOST_KERNELS

enum { IN_INPUT = 0, IN_FEATURE = 1, IN_TIME = 2, IN_BIAS = 3, IN_STATE = 4 };
enum { HOST_SVDF_MAX_INPUT = 4096, HOST_SVDF_FILTERS = 4 };

/* int16 state only with zero point 0 (its time products then need no offset); the input row must
 * fit the stack buffer. Otherwise the reference kernel. */
static int prv_svdf_select(const tfa_engine_t *e, tfa_eng_op_t *op)
{
    const tfa_eng_tensor_t *state = tfa_eng_io(e, &op->inputs, IN_STATE);
    return op->filter_w <= HOST_SVDF_MAX_INPUT && (state->type == TFA_TYPE_INT8 || op->in2_offset == 0);
}

/* sum w[j] * (s[j] - zp): every product fits int16 x int16 and the sum int32 (the memory size is at
 * most TFA_ENG_MAX_TAPS x input size bytes of state, but the wrap of the reference's int32 sum is
 * kept by summing in uint32). */
static uint32_t prv_time8(const int8_t *s, const int8_t *w, uint32_t m, int32_t zp)
{
    const int16_t z = (int16_t)zp;
    uint32_t acc = 0;
    for (uint32_t j = 0; j < m; j++) {
        const int16_t sv = (int16_t)(s[j] - z);
        acc += (uint32_t)((int32_t)w[j] * sv);
    }
    return acc;
}

static uint32_t prv_time16(const int16_t *s, const uint8_t *w, uint32_t m)
{
    uint32_t acc = 0;
    for (uint32_t j = 0; j < m; j++) {
        int16_t wv;
        memcpy(&wv, w + 2u * j, 2); /* int16 weights at any alignment */
        acc += (uint32_t)((int32_t)wv * s[j]);
    }
    return acc;
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
    const size_t esize = wide ? 2u : 1u;
    const uint32_t batch = (uint32_t)tin->dims[0], n = (uint32_t)op->filter_w, m = (uint32_t)op->filter_h;
    const uint32_t rank = (uint32_t)op->depth_mult, filters = (uint32_t)op->axis;
    const int32_t zp = op->in2_offset;
    const int32_t lo = wide ? INT16_MIN : INT8_MIN, hi = wide ? INT16_MAX : INT8_MAX;
    const int16_t off = (int16_t)op->in_offset;
    const tfa_host_rq_t q1 = tfa_host_rq_make(op->mult, op->shift);
    const tfa_host_rq_t q2 = tfa_host_rq_make(op->mult2, op->shift2);
    const size_t total = (size_t)batch * filters * m;
    memmove(state, state + esize, (total - 1u) * esize);
    int16_t xs[HOST_SVDF_MAX_INPUT];
    for (uint32_t b = 0; b < batch; b++) {
        const int8_t *x = in + (size_t)b * n;
        int8_t *po = out + (size_t)b * (filters / rank);
        for (uint32_t c = 0; c < n; c++) {
            xs[c] = (int16_t)(x[c] + off);
        }
        uint32_t u = 0, r = 0;
        int32_t acc = 0;
        for (uint32_t f = 0; f < filters; f += HOST_SVDF_FILTERS) {
            int32_t dots[HOST_SVDF_FILTERS];
            const uint32_t block = filters - f < HOST_SVDF_FILTERS ? filters - f : HOST_SVDF_FILTERS;
            if (block == HOST_SVDF_FILTERS) {
                const int8_t *r0 = wf + (size_t)f * n;
                const int8_t *r1 = r0 + n, *r2 = r1 + n, *r3 = r2 + n;
                int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
                for (uint32_t c = 0; c < n; c++) {
                    const int16_t xv = xs[c];
                    a0 += (int16_t)r0[c] * xv;
                    a1 += (int16_t)r1[c] * xv;
                    a2 += (int16_t)r2[c] * xv;
                    a3 += (int16_t)r3[c] * xv;
                }
                dots[0] = a0, dots[1] = a1, dots[2] = a2, dots[3] = a3;
            } else {
                for (uint32_t k = 0; k < block; k++) {
                    const int8_t *rk = wf + (size_t)(f + k) * n;
                    int32_t a = 0;
                    for (uint32_t c = 0; c < n; c++) {
                        a += (int16_t)rk[c] * xs[c];
                    }
                    dots[k] = a;
                }
            }
            for (uint32_t k = 0; k < block; k++) {
                const uint32_t fk = f + k;
                /* clamped, then offset and narrowed with wrap-around, as the reference */
                const int32_t v = tfa_q_clamp(tfa_host_rq(&q1, dots[k]), lo, hi) + zp;
                const size_t row = ((size_t)b * filters + fk) * m;
                uint32_t sum;
                if (wide) {
                    int16_t *s = (int16_t *)(void *)state + row;
                    s[m - 1u] = (int16_t)(uint16_t)((uint32_t)v & 0xFFFFu);
                    sum = prv_time16(s, wt + 2u * (size_t)fk * m, m);
                } else {
                    int8_t *s = (int8_t *)state + row;
                    s[m - 1u] = (int8_t)(uint8_t)((uint32_t)v & 0xFFu);
                    sum = prv_time8(s, (const int8_t *)wt + (size_t)fk * m, m, zp);
                }
                if (r == 0) {
                    acc = tfa_fb_rd_i32(bias + 4u * u);
                }
                acc = tfa_eng_wrap_add(acc, (int32_t)sum);
                if (++r == rank) {
                    acc = tfa_eng_wrap_add(tfa_host_rq(&q2, acc), op->out_offset);
                    po[u++] = (int8_t)tfa_q_clamp(acc, INT8_MIN, INT8_MAX);
                    r = 0;
                }
            }
        }
    }
}

const tfa_eng_variant_t tfa_eng_svdf_host = {prv_svdf_select, prv_svdf_run};

#endif
