/* What the DSP CONV_2D and DEPTHWISE_CONV_2D kernels share (kernels_conv_dsp.c, kernels_dw_dsp.c): the
 * largest patch, one output's requantization, the input geometry. Internal to those two files. */
#ifndef TFA_KERNELS_CONV_DSP_H
#define TFA_KERNELS_CONV_DSP_H

#include "engine_internal.h"
#include "quant.h"

#if TFA_ENG_OPTIMIZED

/* Largest patch (taps x input channels) given a scratch column; beyond it the reference kernel runs
 * (two columns of 4096 int16 are 16 KiB of arena). */
#define DSP_MAX_TAPS 4096

static inline int8_t tfa_conv_dsp_out(const tfa_eng_op_t *op, const uint8_t *bias, int32_t acc, int32_t c)
{
    if (bias) {
        /* one (unaligned-safe) word load: this build is little-endian (dsp.h), as the model's bytes */
        acc = tfa_eng_wrap_add(acc, (int32_t)tfa_dsp_load4(bias + 4u * (uint32_t)c));
    }
    acc = tfa_eng_wrap_add(tfa_dsp_requantize(acc, op->pc_mult[c], op->pc_shift[c]), op->out_offset);
    return (int8_t)tfa_q_clamp(acc, op->act_min, op->act_max);
}

typedef struct {
    const int8_t *in; /* batch b's input */
    int32_t in_h, in_w, in_ch, kh, kw;
    uint32_t off2; /* input offset in both halves */
} tfa_conv_dsp_geom_t;

#endif
#endif
