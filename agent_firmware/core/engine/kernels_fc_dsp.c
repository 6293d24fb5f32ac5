/* Optimized FULLY_CONNECTED for the Cortex-M4 DSP extension (dsp.h), byte-identical with kernels_fc.c.
 *
 * The reference's sum (w + wo)(x + xo) is computed as sum w * (x + xo) + wo * sum (x + xo): the same
 * integer (the second sum once per batch row, and only when the weights have a zero point). Two units
 * share each input word: SXTB16 / SXTB16 ROR #8 split four input bytes into the pairs (x0, x2) and
 * (x1, x3), SADD16 adds the offset to both halves, and each unit's weight word is split the same way,
 * so one SMLAD takes two taps. No scratch. */
#include "engine_internal.h"
#include "quant.h"

#if TFA_ENG_OPTIMIZED

static int prv_fc_select(const tfa_engine_t *e, tfa_eng_op_t *op)
{
    (void)e;
    (void)op;
    return 1;
}

static inline int8_t prv_out(const tfa_eng_op_t *op, const uint8_t *bias, int64_t wide, uint32_t u)
{
    int32_t acc = (int32_t)wide; /* fits, as in the reference */
    if (bias) {
        acc = tfa_eng_wrap_add(acc, tfa_fb_rd_i32(bias + 4u * u));
    }
    if (op->pc_mult) {
        acc = tfa_dsp_requantize(acc, op->pc_mult[u], op->pc_shift[u]);
    } else {
        acc = tfa_dsp_requantize(acc, op->mult, op->shift);
    }
    acc = tfa_eng_wrap_add(acc, op->out_offset);
    return (int8_t)tfa_q_clamp(acc, op->act_min, op->act_max);
}

static void prv_fc_run(const tfa_engine_t *e, const tfa_eng_op_t *op)
{
    const tfa_eng_tensor_t *tin = tfa_eng_io(e, &op->inputs, 0);
    const tfa_eng_tensor_t *tw = tfa_eng_io(e, &op->inputs, 1);
    const tfa_eng_tensor_t *tb = tfa_eng_io(e, &op->inputs, 2);
    const tfa_eng_tensor_t *tout = tfa_eng_io(e, &op->outputs, 0);
    const int8_t *in = (const int8_t *)tfa_eng_cdata(e, tin);
    const int8_t *w = (const int8_t *)tw->const_data;
    const uint8_t *bias = tb ? tb->const_data : NULL;
    int8_t *out = (int8_t *)tfa_eng_data(e, tout);
    const uint32_t depth = (uint32_t)op->filter_w;
    const uint32_t units = (uint32_t)op->depth_mult;
    const uint32_t batches = tin->elements / depth;
    const uint32_t d4 = depth & ~3u;
    const uint32_t off2 = tfa_dsp_pack2(op->in_offset, op->in_offset);
    for (uint32_t b = 0; b < batches; b++) {
        const int8_t *x = in + (size_t)b * depth;
        int8_t *po = out + (size_t)b * units;
        int64_t wterm = 0; /* wo * sum (x + xo) */
        if (op->in2_offset != 0) {
            int32_t xsum = 0;
            for (uint32_t d = 0; d < depth; d++) {
                xsum += x[d] + op->in_offset;
            }
            wterm = (int64_t)op->in2_offset * xsum;
        }
        uint32_t u = 0;
        for (; u + 1 < units; u += 2) {
            const int8_t *ra = w + (size_t)u * depth;
            const int8_t *rb = ra + depth;
            int32_t a = 0, c = 0;
            for (uint32_t d = 0; d < d4; d += 4) {
                const uint32_t v = tfa_dsp_load4(x + d);
                const uint32_t xl = tfa_dsp_sadd16(tfa_dsp_sxtb16(v), off2);
                const uint32_t xh = tfa_dsp_sadd16(tfa_dsp_sxtb16_ror8(v), off2);
                const uint32_t wa = tfa_dsp_load4(ra + d);
                const uint32_t wb = tfa_dsp_load4(rb + d);
                a = tfa_dsp_smlad(tfa_dsp_sxtb16(wa), xl, a);
                a = tfa_dsp_smlad(tfa_dsp_sxtb16_ror8(wa), xh, a);
                c = tfa_dsp_smlad(tfa_dsp_sxtb16(wb), xl, c);
                c = tfa_dsp_smlad(tfa_dsp_sxtb16_ror8(wb), xh, c);
            }
            for (uint32_t d = d4; d < depth; d++) {
                const int32_t xv = x[d] + op->in_offset;
                a += ra[d] * xv;
                c += rb[d] * xv;
            }
            po[u] = prv_out(op, bias, a + wterm, u);
            po[u + 1] = prv_out(op, bias, c + wterm, u + 1);
        }
        for (; u < units; u++) {
            const int8_t *ra = w + (size_t)u * depth;
            int32_t a = 0;
            for (uint32_t d = 0; d < d4; d += 4) {
                const uint32_t v = tfa_dsp_load4(x + d);
                const uint32_t wa = tfa_dsp_load4(ra + d);
                a = tfa_dsp_smlad(tfa_dsp_sxtb16(wa), tfa_dsp_sadd16(tfa_dsp_sxtb16(v), off2), a);
                a = tfa_dsp_smlad(tfa_dsp_sxtb16_ror8(wa), tfa_dsp_sadd16(tfa_dsp_sxtb16_ror8(v), off2), a);
            }
            for (uint32_t d = d4; d < depth; d++) {
                a += ra[d] * (x[d] + op->in_offset);
            }
            po[u] = prv_out(op, bias, a + wterm, u);
        }
    }
}

const tfa_eng_variant_t tfa_eng_fc_dsp = {prv_fc_select, prv_fc_run};

#endif
