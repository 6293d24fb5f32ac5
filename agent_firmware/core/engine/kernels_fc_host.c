/* Host kernel of FULLY_CONNECTED (TFA_ENGINE_KERNELS_HOST), byte-identical with kernels_fc.c.
 *
 * The reference's sum (w + wo)(x + xo) is computed as sum w * (x + xo) + wo * sum (x + xo), the same
 * integer: each batch row is copied once into an int16 buffer with its offset added (on the stack),
 * then four units at a time take one pass over it, int16 x int16 products into int32 sums, a loop the
 * compiler vectorises (PMADDWD on x86-64's baseline SSE2). No arena scratch. */
#include "engine_internal.h"
#include "kernels_host.h"
#include "quant.h"

#if TFA_ENG_HOST_KERNELS

enum { HOST_FC_MAX_DEPTH = 8192, HOST_FC_UNITS = 4 };

static int prv_fc_select(const tfa_engine_t *e, tfa_eng_op_t *op)
{
    (void)e;
    return op->filter_w <= HOST_FC_MAX_DEPTH;
}

static inline int8_t prv_out(const tfa_eng_op_t *op, const uint8_t *bias, int64_t wide, uint32_t u)
{
    int32_t acc = (int32_t)wide; /* fits, as in the reference */
    if (bias) {
        acc = tfa_eng_wrap_add(acc, tfa_fb_rd_i32(bias + 4u * u));
    }
    const tfa_host_rq_t q = op->pc_mult ? tfa_host_rq_make(op->pc_mult[u], op->pc_shift[u])
                                        : tfa_host_rq_make(op->mult, op->shift);
    acc = tfa_eng_wrap_add(tfa_host_rq(&q, acc), op->out_offset);
    return (int8_t)tfa_q_clamp(acc, op->act_min, op->act_max);
}

static void prv_fc_run(const tfa_engine_t *e, const tfa_eng_op_t *op)
{
    const tfa_eng_tensor_t *tin = tfa_eng_io(e, &op->inputs, 0);
    const tfa_eng_tensor_t *tb = tfa_eng_io(e, &op->inputs, 2);
    const int8_t *in = (const int8_t *)tfa_eng_cdata(e, tin);
    const int8_t *w = (const int8_t *)tfa_eng_io(e, &op->inputs, 1)->const_data;
    const uint8_t *bias = tb ? tb->const_data : NULL;
    int8_t *out = (int8_t *)tfa_eng_data(e, tfa_eng_io(e, &op->outputs, 0));
    const uint32_t depth = (uint32_t)op->filter_w;
    const uint32_t units = (uint32_t)op->depth_mult;
    const uint32_t batches = tin->elements / depth;
    const int16_t off = (int16_t)op->in_offset;
    int16_t xs[HOST_FC_MAX_DEPTH];
    for (uint32_t b = 0; b < batches; b++) {
        const int8_t *x = in + (size_t)b * depth;
        int8_t *po = out + (size_t)b * units;
        int32_t xsum = 0;
        for (uint32_t d = 0; d < depth; d++) {
            xs[d] = (int16_t)(x[d] + off);
            xsum += xs[d];
        }
        const int64_t wterm = (int64_t)op->in2_offset * xsum; /* wo * sum (x + xo) */
        uint32_t u = 0;
        for (; u + HOST_FC_UNITS <= units; u += HOST_FC_UNITS) {
            const int8_t *r0 = w + (size_t)u * depth;
            const int8_t *r1 = r0 + depth, *r2 = r1 + depth, *r3 = r2 + depth;
            int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
            for (uint32_t d = 0; d < depth; d++) {
                const int16_t xd = xs[d];
                a0 += (int16_t)r0[d] * xd;
                a1 += (int16_t)r1[d] * xd;
                a2 += (int16_t)r2[d] * xd;
                a3 += (int16_t)r3[d] * xd;
            }
            po[u] = prv_out(op, bias, a0 + wterm, u);
            po[u + 1] = prv_out(op, bias, a1 + wterm, u + 1);
            po[u + 2] = prv_out(op, bias, a2 + wterm, u + 2);
            po[u + 3] = prv_out(op, bias, a3 + wterm, u + 3);
        }
        for (; u < units; u++) {
            const int8_t *r = w + (size_t)u * depth;
            int32_t a = 0;
            for (uint32_t d = 0; d < depth; d++) {
                a += (int16_t)r[d] * xs[d];
            }
            po[u] = prv_out(op, bias, a + wterm, u);
        }
    }
}

const tfa_eng_variant_t tfa_eng_fc_host = {prv_fc_select, prv_fc_run};

#endif
