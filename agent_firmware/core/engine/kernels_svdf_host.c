/* Host kernel of int8 SVDF (TFA_ENGINE_KERNELS_HOST), byte-identical with kernels_svdf.c.
 *
 * The state moves one step back in time with one memmove, as the reference. Each batch row of the
 * input is copied once into an int16 buffer with its offset added (on the stack); four filters at a
 * time take one pass over it (int16 x int16 -> int32, a loop the compiler vectorises) and write their
 * newest state values. The time stage then runs over a chunk of whole state rows: one long loop widens
 * the rows (minus the state zero point) and their time weights to int16, and each row's sum is an
 * int16 dot product, which the compiler vectorises eight taps a step (PMADDWD on x86-64's baseline
 * SSE2): the keyword model's memory of 8 is one step, where a loop over the int8 row, vectorised 16
 * bytes a step, would run entirely in its scalar tail. No arena scratch. */
#include <string.h>

#include "engine_internal.h"
#include "kernels_host.h"
#include "quant.h"

#if TFA_ENG_HOST_KERNELS

enum { IN_INPUT = 0, IN_FEATURE = 1, IN_TIME = 2, IN_BIAS = 3, IN_STATE = 4 };
enum { HOST_SVDF_MAX_INPUT = 4096, HOST_SVDF_FILTERS = 4, HOST_SVDF_CHUNK = 2048 };

/* The input row must fit its stack buffer, an int8 state row the chunk (each int16 product w * (s -
 * zp) is at most 128 x 255 in magnitude, so a row's int32 sum cannot overflow either); an int16 state
 * only with zero point 0 (its products then need no offset). Otherwise the reference kernel. */
static int prv_svdf_select(const tfa_engine_t *e, tfa_eng_op_t *op)
{
    const tfa_eng_tensor_t *state = tfa_eng_io(e, &op->inputs, IN_STATE);
    if (op->filter_w > HOST_SVDF_MAX_INPUT) {
        return 0;
    }
    return state->type == TFA_TYPE_INT8 ? op->filter_h <= HOST_SVDF_CHUNK : op->in2_offset == 0;
}

static int32_t prv_dot16(const int16_t *a, const int16_t *b, uint32_t m)
{
    int32_t acc = 0;
    for (uint32_t j = 0; j < m; j++) {
        acc += a[j] * b[j];
    }
    return acc;
}

/* int16 state row x int16 time weights (bytes w, any alignment), wrapping like TFLM's int32 sum. */
static uint32_t prv_time16(const int16_t *s, const uint8_t *w, uint32_t m)
{
    uint32_t acc = 0;
    for (uint32_t j = 0; j < m; j++) {
        int16_t wv;
        memcpy(&wv, w + 2u * j, 2);
        acc += (uint32_t)((int32_t)wv * s[j]);
    }
    return acc;
}

typedef struct {
    const tfa_eng_op_t *op;
    const int8_t *wf;         /* feature weights */
    const uint8_t *wt;        /* time weights */
    const uint8_t *bias;
    uint8_t *state;           /* this batch row's state */
    int8_t *out;              /* this batch row's output */
    const int16_t *xs;        /* this batch row's input + offset */
    tfa_host_rq_t q1, q2;
    uint32_t n, m, rank;
    int32_t lo, hi;
    int wide;
    uint32_t u, r;            /* unit sums: the unit and rank filter next */
    int32_t acc;
} prv_ctx_t;

/* Feature stage of filters f0..f0+count-1: each newest value into its row's last element. */
static void prv_features(prv_ctx_t *c, uint32_t f0, uint32_t count)
{
    const uint32_t n = c->n, m = c->m;
    const int16_t *xs = c->xs;
    for (uint32_t f = f0; f < f0 + count; f += HOST_SVDF_FILTERS) {
        int32_t dots[HOST_SVDF_FILTERS];
        const uint32_t block = f0 + count - f < HOST_SVDF_FILTERS ? f0 + count - f : HOST_SVDF_FILTERS;
        if (block == HOST_SVDF_FILTERS) {
            const int8_t *r0 = c->wf + (size_t)f * n;
            const int8_t *r1 = r0 + n, *r2 = r1 + n, *r3 = r2 + n;
            int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
            for (uint32_t i = 0; i < n; i++) {
                const int16_t xv = xs[i];
                a0 += (int16_t)r0[i] * xv;
                a1 += (int16_t)r1[i] * xv;
                a2 += (int16_t)r2[i] * xv;
                a3 += (int16_t)r3[i] * xv;
            }
            dots[0] = a0, dots[1] = a1, dots[2] = a2, dots[3] = a3;
        } else {
            for (uint32_t k = 0; k < block; k++) {
                const int8_t *rk = c->wf + (size_t)(f + k) * n;
                int32_t a = 0;
                for (uint32_t i = 0; i < n; i++) {
                    a += (int16_t)rk[i] * xs[i];
                }
                dots[k] = a;
            }
        }
        for (uint32_t k = 0; k < block; k++) {
            /* clamped, then offset and narrowed with wrap-around, as the reference */
            const int32_t v = tfa_q_clamp(tfa_host_rq(&c->q1, dots[k]), c->lo, c->hi) + c->op->in2_offset;
            const size_t last = (size_t)(f + k) * m + m - 1u;
            if (c->wide) {
                ((int16_t *)(void *)c->state)[last] = (int16_t)(uint16_t)((uint32_t)v & 0xFFFFu);
            } else {
                ((int8_t *)c->state)[last] = (int8_t)(uint8_t)((uint32_t)v & 0xFFu);
            }
        }
    }
}

/* One filter's time sum into the unit sums; a finished unit's output. */
static inline void prv_unit_add(prv_ctx_t *c, uint32_t sum)
{
    if (c->r == 0) {
        c->acc = tfa_fb_rd_i32(c->bias + 4u * c->u);
    }
    c->acc = tfa_eng_wrap_add(c->acc, (int32_t)sum);
    if (++c->r == c->rank) {
        const int32_t acc = tfa_eng_wrap_add(tfa_host_rq(&c->q2, c->acc), c->op->out_offset);
        c->out[c->u++] = (int8_t)tfa_q_clamp(acc, INT8_MIN, INT8_MAX);
        c->r = 0;
    }
}

/* Time stage of filters f0..f0+count-1 (count x m <= HOST_SVDF_CHUNK for an int8 state). */
static void prv_times(prv_ctx_t *c, uint32_t f0, uint32_t count)
{
    const uint32_t m = c->m;
    if (c->wide) {
        for (uint32_t f = f0; f < f0 + count; f++) {
            const int16_t *s = (const int16_t *)(const void *)c->state + (size_t)f * m;
            prv_unit_add(c, prv_time16(s, c->wt + 2u * (size_t)f * m, m));
        }
        return;
    }
    int16_t sb[HOST_SVDF_CHUNK], wb[HOST_SVDF_CHUNK];
    const int8_t *s = (const int8_t *)c->state + (size_t)f0 * m;
    const int8_t *w = (const int8_t *)c->wt + (size_t)f0 * m;
    const int16_t zp = (int16_t)c->op->in2_offset;
    const uint32_t len = count * m;
    for (uint32_t i = 0; i < len; i++) {
        sb[i] = (int16_t)(s[i] - zp);
        wb[i] = w[i];
    }
    for (uint32_t k = 0; k < count; k++) {
        prv_unit_add(c, (uint32_t)prv_dot16(sb + (size_t)k * m, wb + (size_t)k * m, m));
    }
}

static void prv_svdf_run(const tfa_engine_t *e, const tfa_eng_op_t *op)
{
    const tfa_eng_tensor_t *tin = tfa_eng_io(e, &op->inputs, IN_INPUT);
    const tfa_eng_tensor_t *tst = tfa_eng_io(e, &op->inputs, IN_STATE);
    const int8_t *in = (const int8_t *)tfa_eng_cdata(e, tin);
    uint8_t *state = tfa_eng_data(e, tst);
    int8_t *out = (int8_t *)tfa_eng_data(e, tfa_eng_io(e, &op->outputs, 0));
    prv_ctx_t c;
    c.op = op;
    c.wf = (const int8_t *)tfa_eng_io(e, &op->inputs, IN_FEATURE)->const_data;
    c.wt = tfa_eng_io(e, &op->inputs, IN_TIME)->const_data;
    c.bias = tfa_eng_io(e, &op->inputs, IN_BIAS)->const_data;
    c.wide = tst->type == TFA_TYPE_INT16;
    c.n = (uint32_t)op->filter_w;
    c.m = (uint32_t)op->filter_h;
    c.rank = (uint32_t)op->depth_mult;
    c.lo = c.wide ? INT16_MIN : INT8_MIN;
    c.hi = c.wide ? INT16_MAX : INT8_MAX;
    c.q1 = tfa_host_rq_make(op->mult, op->shift);
    c.q2 = tfa_host_rq_make(op->mult2, op->shift2);
    const size_t esize = c.wide ? 2u : 1u;
    const uint32_t batch = (uint32_t)tin->dims[0], filters = (uint32_t)op->axis;
    /* whole rows per time-stage chunk (select: an int8 row fits one) */
    const uint32_t chunk = c.wide ? filters : HOST_SVDF_CHUNK / c.m;
    memmove(state, state + esize, ((size_t)batch * filters * c.m - 1u) * esize);
    int16_t xs[HOST_SVDF_MAX_INPUT];
    const int16_t off = (int16_t)op->in_offset;
    for (uint32_t b = 0; b < batch; b++) {
        const int8_t *x = in + (size_t)b * c.n;
        for (uint32_t i = 0; i < c.n; i++) {
            xs[i] = (int16_t)(x[i] + off);
        }
        c.xs = xs;
        c.state = state + (size_t)b * filters * c.m * esize;
        c.out = out + (size_t)b * (filters / c.rank);
        c.u = 0, c.r = 0, c.acc = 0;
        for (uint32_t f = 0; f < filters; f += chunk) {
            const uint32_t count = filters - f < chunk ? filters - f : chunk;
            prv_features(&c, f, count);
            prv_times(&c, f, count);
        }
    }
}

const tfa_eng_variant_t tfa_eng_svdf_host = {prv_svdf_select, prv_svdf_run};

#endif
