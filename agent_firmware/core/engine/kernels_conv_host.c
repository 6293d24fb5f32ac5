/* Host kernels of CONV_2D and DEPTHWISE_CONV_2D (TFA_ENGINE_KERNELS_HOST), byte-identical with
 * kernels_conv.c. Portable C whose inner loops the compiler vectorises (built -O3, baseline ISA):
 * int16 operands with int32 sums, which x86-64's SSE2 runs as PMADDWD / PMULLW.
 *
 * Why the same bytes: the reference sums w * (x + offset) over the taps inside the input. Here each
 * input value gets its offset once when it is copied into an int16 buffer, and a tap outside the input
 * is a 0 in that buffer, so the full-window sum is the same integer (|w| <= 128, |x + offset| <= 255:
 * every product fits int16, every sum of at most HOST_MAX_TAPS of them int32). Requantization is
 * tfa_host_rq (kernels_host.h), equal to tfa_q_mul_by_quantized for every input.
 * No arena scratch: the buffers are on the stack (a hosted build's), so the arena is the reference's. */
#include "engine_internal.h"
#include "kernels_host.h"
#include "quant.h"

#if TFA_ENG_HOST_KERNELS

enum {
    HOST_MAX_TAPS = 2048,  /* conv: window taps x input depth per output (larger: the reference) */
    HOST_PIXELS = 4,       /* conv: output pixels sharing each filter row */
    HOST_MAX_CH = 1024,    /* output channels (their requantization constants are on the stack) */
    HOST_DW_LANES = 8,     /* depthwise: output channels accumulated together, one vector */
    HOST_DW_MAX_TAPS = 64, /* depthwise, channel-major path: window taps */
    HOST_DW_WT = 8192      /* depthwise, tap-major path: taps x channels of the transposed filter */
};

/* The output of channel c from its sum: bias, requantization, output offset, activation clamp. */
static inline int8_t prv_out(const tfa_eng_op_t *op, const tfa_host_rq_t *rq, const uint8_t *bias,
                             int32_t acc, int32_t c)
{
    if (bias) {
        acc = tfa_eng_wrap_add(acc, tfa_fb_rd_i32(bias + 4u * (uint32_t)c));
    }
    acc = tfa_eng_wrap_add(tfa_host_rq(&rq[c], acc), op->out_offset);
    return (int8_t)tfa_q_clamp(acc, op->act_min, op->act_max);
}

static void prv_rq_table(const tfa_eng_op_t *op, int32_t channels, tfa_host_rq_t *rq)
{
    for (int32_t c = 0; c < channels; c++) {
        rq[c] = tfa_host_rq_make(op->pc_mult[c], op->pc_shift[c]);
    }
}

typedef struct {
    const int8_t *in, *filter;
    const uint8_t *bias;
    int8_t *out;
    int32_t batches, in_h, in_w, in_ch, out_h, out_w, out_ch, kh, kw;
} prv_geo_t;

static void prv_geo(const tfa_engine_t *e, const tfa_eng_op_t *op, prv_geo_t *g)
{
    const tfa_eng_tensor_t *tin = tfa_eng_io(e, &op->inputs, 0);
    const tfa_eng_tensor_t *tb = tfa_eng_io(e, &op->inputs, 2);
    const tfa_eng_tensor_t *tout = tfa_eng_io(e, &op->outputs, 0);
    g->in = (const int8_t *)tfa_eng_cdata(e, tin);
    g->filter = (const int8_t *)tfa_eng_io(e, &op->inputs, 1)->const_data;
    g->bias = tb ? tb->const_data : NULL;
    g->out = (int8_t *)tfa_eng_data(e, tout);
    g->batches = tin->dims[0];
    g->in_h = tin->dims[1];
    g->in_w = tin->dims[2];
    g->in_ch = tin->dims[3];
    g->out_h = tout->dims[1];
    g->out_w = tout->dims[2];
    g->out_ch = tout->dims[3];
    g->kh = op->filter_h;
    g->kw = op->filter_w;
}

/* The window of output pixel (b, oy, ox) in filter order (ky, kx, ic), offset added, 0 outside. */
static void prv_patch(const tfa_eng_op_t *op, const prv_geo_t *g, int32_t b, int32_t oy, int32_t ox,
                      int16_t *dst)
{
    const int32_t y0 = oy * op->stride_h - op->pad_h, x0 = ox * op->stride_w - op->pad_w;
    const int16_t off = (int16_t)op->in_offset;
    for (int32_t ky = 0; ky < g->kh; ky++) {
        const int32_t iy = y0 + op->dil_h * ky;
        for (int32_t kx = 0; kx < g->kw; kx++, dst += g->in_ch) {
            const int32_t ix = x0 + op->dil_w * kx;
            if (iy < 0 || iy >= g->in_h || ix < 0 || ix >= g->in_w) {
                for (int32_t c = 0; c < g->in_ch; c++) {
                    dst[c] = 0;
                }
                continue;
            }
            const int8_t *px = g->in + tfa_eng_nhwc(b, iy, ix, 0, g->in_h, g->in_w, g->in_ch);
            for (int32_t c = 0; c < g->in_ch; c++) {
                dst[c] = (int16_t)(px[c] + off);
            }
        }
    }
}

static int prv_conv_select(const tfa_engine_t *e, tfa_eng_op_t *op)
{
    const tfa_eng_tensor_t *in = tfa_eng_io(e, &op->inputs, 0);
    const tfa_eng_tensor_t *out = tfa_eng_io(e, &op->outputs, 0);
    return (int64_t)op->filter_h * op->filter_w * in->dims[3] <= HOST_MAX_TAPS && out->dims[3] <= HOST_MAX_CH;
}

/* HOST_PIXELS output pixels of a row at a time: their windows are copied once, then every filter row
 * is read once for all of them (four int32 sums in one loop over the taps). */
_Static_assert(HOST_PIXELS == 4, "prv_conv_run keeps one named sum per pixel");
static void prv_conv_run(const tfa_engine_t *e, const tfa_eng_op_t *op)
{
    prv_geo_t g;
    prv_geo(e, op, &g);
    const int32_t taps = g.kh * g.kw * g.in_ch;
    int16_t patch[HOST_PIXELS][HOST_MAX_TAPS];
    tfa_host_rq_t rq[HOST_MAX_CH];
    prv_rq_table(op, g.out_ch, rq);
    for (int32_t b = 0; b < g.batches; b++) {
        for (int32_t oy = 0; oy < g.out_h; oy++) {
            for (int32_t ox0 = 0; ox0 < g.out_w; ox0 += HOST_PIXELS) {
                const int32_t n = g.out_w - ox0 < HOST_PIXELS ? g.out_w - ox0 : HOST_PIXELS;
                for (int32_t p = 0; p < HOST_PIXELS; p++) {
                    /* a short tile repeats its last pixel (computed, not stored) */
                    prv_patch(op, &g, b, oy, ox0 + (p < n ? p : n - 1), patch[p]);
                }
                int8_t *po = g.out + tfa_eng_nhwc(b, oy, ox0, 0, g.out_h, g.out_w, g.out_ch);
                const int16_t *x0 = patch[0], *x1 = patch[1], *x2 = patch[2], *x3 = patch[3];
                for (int32_t oc = 0; oc < g.out_ch; oc++) {
                    const int8_t *w = g.filter + (size_t)oc * (size_t)taps;
                    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
                    for (int32_t k = 0; k < taps; k++) {
                        const int16_t wk = w[k];
                        a0 += wk * x0[k];
                        a1 += wk * x1[k];
                        a2 += wk * x2[k];
                        a3 += wk * x3[k];
                    }
                    const int32_t acc[HOST_PIXELS] = {a0, a1, a2, a3};
                    for (int32_t p = 0; p < n; p++) {
                        po[(size_t)p * (size_t)g.out_ch + (size_t)oc] = prv_out(op, rq, g.bias, acc[p], oc);
                    }
                }
            }
        }
    }
}

const tfa_eng_variant_t tfa_eng_conv_host = {prv_conv_select, prv_conv_run};

static int prv_dw_tap_major_fits(int32_t taps, int32_t channels)
{
    return taps >= 16 && (int64_t)taps * channels <= HOST_DW_WT;
}

static int prv_dw_select(const tfa_engine_t *e, tfa_eng_op_t *op)
{
    const int32_t taps = op->filter_h * op->filter_w; /* prepare bounds it by TFA_ENG_MAX_TAPS */
    const int32_t channels = tfa_eng_io(e, &op->outputs, 0)->dims[3];
    return channels <= HOST_MAX_CH && (taps <= HOST_DW_MAX_TAPS || prv_dw_tap_major_fits(taps, channels));
}

/* Few channels and many taps (micro_speech: 1 input channel, 80 taps, 8 outputs): the filter is
 * transposed once per run into one int16 row of taps per output channel (on the stack), and each
 * output is one dot product of that row with the window of its input channel. */
static void prv_dw_tap_major(const tfa_eng_op_t *op, const prv_geo_t *g, const tfa_host_rq_t *rq)
{
    const int32_t taps = g->kh * g->kw, dm = op->depth_mult;
    int16_t wt[HOST_DW_WT];
    int16_t win[HOST_DW_WT];
    for (int32_t t = 0; t < taps; t++) {
        for (int32_t oc = 0; oc < g->out_ch; oc++) {
            wt[oc * taps + t] = g->filter[(size_t)t * (size_t)g->out_ch + (size_t)oc];
        }
    }
    const int16_t off = (int16_t)op->in_offset;
    for (int32_t b = 0; b < g->batches; b++) {
        for (int32_t oy = 0; oy < g->out_h; oy++) {
            const int32_t y0 = oy * op->stride_h - op->pad_h;
            for (int32_t ox = 0; ox < g->out_w; ox++) {
                const int32_t x0 = ox * op->stride_w - op->pad_w;
                int8_t *po = g->out + tfa_eng_nhwc(b, oy, ox, 0, g->out_h, g->out_w, g->out_ch);
                for (int32_t ic = 0; ic < g->in_ch; ic++) {
                    int32_t t = 0;
                    for (int32_t ky = 0; ky < g->kh; ky++) {
                        const int32_t iy = y0 + op->dil_h * ky;
                        for (int32_t kx = 0; kx < g->kw; kx++, t++) {
                            const int32_t ix = x0 + op->dil_w * kx;
                            win[t] = (iy < 0 || iy >= g->in_h || ix < 0 || ix >= g->in_w)
                                         ? (int16_t)0
                                         : (int16_t)(g->in[tfa_eng_nhwc(b, iy, ix, ic, g->in_h, g->in_w,
                                                                        g->in_ch)] +
                                                     off);
                        }
                    }
                    for (int32_t m = 0; m < dm; m++) {
                        const int32_t oc = ic * dm + m;
                        const int16_t *w = wt + oc * taps;
                        int32_t acc = 0;
                        for (int32_t k = 0; k < taps; k++) {
                            acc += w[k] * win[k];
                        }
                        po[oc] = prv_out(op, rq, g->bias, acc, oc);
                    }
                }
            }
        }
    }
}

/* Channels innermost (contiguous in filter and output): per output pixel the taps inside the input
 * are listed once, then each group of HOST_DW_LANES channels sums over them in one vector of int32
 * (the input value of output channel c is x[c / depth_multiplier], a gather when that is not 1). */
static void prv_dw_channel_major(const tfa_eng_op_t *op, const prv_geo_t *g, const tfa_host_rq_t *rq)
{
    const int32_t dm = op->depth_mult, chans = g->out_ch;
    const int16_t off = (int16_t)op->in_offset;
    int32_t xoff[HOST_DW_MAX_TAPS], foff[HOST_DW_MAX_TAPS];
    int32_t ich[HOST_MAX_CH];
    for (int32_t c = 0; c < chans; c++) {
        ich[c] = c / dm;
    }
    for (int32_t b = 0; b < g->batches; b++) {
        for (int32_t oy = 0; oy < g->out_h; oy++) {
            const int32_t y0 = oy * op->stride_h - op->pad_h;
            for (int32_t ox = 0; ox < g->out_w; ox++) {
                const int32_t x0 = ox * op->stride_w - op->pad_w;
                int32_t nt = 0;
                for (int32_t ky = 0; ky < g->kh; ky++) {
                    const int32_t iy = y0 + op->dil_h * ky;
                    for (int32_t kx = 0; iy >= 0 && iy < g->in_h && kx < g->kw; kx++) {
                        const int32_t ix = x0 + op->dil_w * kx;
                        if (ix >= 0 && ix < g->in_w) {
                            xoff[nt] = (int32_t)tfa_eng_nhwc(b, iy, ix, 0, g->in_h, g->in_w, g->in_ch);
                            foff[nt++] = (ky * g->kw + kx) * chans;
                        }
                    }
                }
                int8_t *po = g->out + tfa_eng_nhwc(b, oy, ox, 0, g->out_h, g->out_w, chans);
                int32_t c = 0;
                for (; dm == 1 && c + HOST_DW_LANES <= chans; c += HOST_DW_LANES) {
                    int32_t acc[HOST_DW_LANES] = {0};
                    for (int32_t t = 0; t < nt; t++) {
                        const int8_t *px = g->in + xoff[t] + c;
                        const int8_t *pf = g->filter + foff[t] + c;
                        /* left a loop: fully unrolled first, GCC 12 no longer vectorises it */
#pragma GCC unroll 1
                        for (int32_t j = 0; j < HOST_DW_LANES; j++) {
                            acc[j] += (int16_t)(pf[j] * (int16_t)(px[j] + off));
                        }
                    }
                    for (int32_t j = 0; j < HOST_DW_LANES; j++) {
                        po[c + j] = prv_out(op, rq, g->bias, acc[j], c + j);
                    }
                }
                for (; c + HOST_DW_LANES <= chans; c += HOST_DW_LANES) {
                    int32_t acc[HOST_DW_LANES] = {0};
                    for (int32_t t = 0; t < nt; t++) {
                        const int8_t *px = g->in + xoff[t];
                        const int8_t *pf = g->filter + foff[t] + c;
                        for (int32_t j = 0; j < HOST_DW_LANES; j++) {
                            acc[j] += (int16_t)(pf[j] * (int16_t)(px[ich[c + j]] + off));
                        }
                    }
                    for (int32_t j = 0; j < HOST_DW_LANES; j++) {
                        po[c + j] = prv_out(op, rq, g->bias, acc[j], c + j);
                    }
                }
                for (; c < chans; c++) {
                    int32_t acc = 0;
                    for (int32_t t = 0; t < nt; t++) {
                        acc += g->filter[foff[t] + c] * (g->in[xoff[t] + ich[c]] + off);
                    }
                    po[c] = prv_out(op, rq, g->bias, acc, c);
                }
            }
        }
    }
}

static void prv_dw_run(const tfa_engine_t *e, const tfa_eng_op_t *op)
{
    prv_geo_t g;
    prv_geo(e, op, &g);
    tfa_host_rq_t rq[HOST_MAX_CH];
    prv_rq_table(op, g.out_ch, rq);
    if (prv_dw_tap_major_fits(g.kh * g.kw, g.out_ch)) {
        prv_dw_tap_major(op, &g, rq);
    } else {
        prv_dw_channel_major(op, &g, rq);
    }
}

const tfa_eng_variant_t tfa_eng_depthwise_host = {prv_dw_select, prv_dw_run};

#endif
