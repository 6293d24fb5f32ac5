/* AVERAGE_POOL_2D and MAX_POOL_2D, int8 (TFLite reference_integer_ops pooling): the window is clipped
 * to the input, the average is rounded half away from zero over the clipped count. */
#include "engine_internal.h"
#include "quant.h"
#include "tfa/errors.h"

enum { POOL_PADDING = 0, POOL_STRIDE_W = 1, POOL_STRIDE_H = 2, POOL_FILTER_W = 3, POOL_FILTER_H = 4,
       POOL_ACTIVATION = 5 };

int tfa_eng_prepare_pool(tfa_engine_t *e, tfa_eng_op_t *op, uint32_t options)
{
    tfa_fb_t fb = {e->model, e->model_len};
    const tfa_eng_tensor_t *in = tfa_eng_io(e, &op->inputs, 0);
    const tfa_eng_tensor_t *out = tfa_eng_io(e, &op->outputs, 0);
    uint8_t padding = 0;
    uint8_t act = 0;
    int rc = tfa_eng_check(in, TFA_TYPE_INT8, 0);
    rc = rc ? rc : tfa_eng_check(out, TFA_TYPE_INT8, 0);
    if (rc != 0) {
        return rc;
    }
    if (options == 0) {
        return -TFA_ERR_MODEL_INVALID;
    }
    rc = tfa_fb_u8(&fb, options, POOL_PADDING, 0, &padding);
    rc = rc ? rc : tfa_fb_i32(&fb, options, POOL_STRIDE_W, 0, &op->stride_w);
    rc = rc ? rc : tfa_fb_i32(&fb, options, POOL_STRIDE_H, 0, &op->stride_h);
    rc = rc ? rc : tfa_fb_i32(&fb, options, POOL_FILTER_W, 0, &op->filter_w);
    rc = rc ? rc : tfa_fb_i32(&fb, options, POOL_FILTER_H, 0, &op->filter_h);
    rc = rc ? rc : tfa_fb_u8(&fb, options, POOL_ACTIVATION, 0, &act);
    if (rc != 0) {
        return rc;
    }
    if (act > 3 || out->scale_count == 0 || (uint64_t)op->filter_w * (uint64_t)op->filter_h > (1u << 23)) {
        return -TFA_ERR_UNSUPPORTED_OP;
    }
    if (in->rank != 4 || out->rank != 4 || in->dims[0] != out->dims[0] || in->dims[3] != out->dims[3]) {
        return -TFA_ERR_MODEL_INVALID;
    }
    op->dil_w = 1;
    op->dil_h = 1;
    rc = tfa_eng_conv_geometry(op, padding, in, out);
    if (rc != 0) {
        return rc;
    }
    if (tfa_q_activation_range(act, out->scale, out->zero_point, &op->act_min, &op->act_max) != 0) {
        return -TFA_ERR_MODEL_INVALID;
    }
    e->mac_count += (uint64_t)out->elements * (uint64_t)op->filter_w * (uint64_t)op->filter_h;
    return 0;
}

void tfa_eng_run_pool(const tfa_engine_t *e, const tfa_eng_op_t *op)
{
    const tfa_eng_tensor_t *tin = tfa_eng_io(e, &op->inputs, 0);
    const tfa_eng_tensor_t *tout = tfa_eng_io(e, &op->outputs, 0);
    const int8_t *in = (const int8_t *)tfa_eng_cdata(e, tin);
    int8_t *out = (int8_t *)tfa_eng_data(e, tout);
    const int is_max = op->code == TFA_OP_MAX_POOL_2D;
    const int32_t in_h = tin->dims[1], in_w = tin->dims[2], ch = tin->dims[3];
    const int32_t out_h = tout->dims[1], out_w = tout->dims[2];
    for (int32_t b = 0; b < tin->dims[0]; b++) {
        for (int32_t oy = 0; oy < out_h; oy++) {
            const int32_t y0 = oy * op->stride_h - op->pad_h;
            const int32_t ky0 = y0 < 0 ? -y0 : 0;
            const int32_t ky1 = op->filter_h < in_h - y0 ? op->filter_h : in_h - y0;
            for (int32_t ox = 0; ox < out_w; ox++) {
                const int32_t x0 = ox * op->stride_w - op->pad_w;
                const int32_t kx0 = x0 < 0 ? -x0 : 0;
                const int32_t kx1 = op->filter_w < in_w - x0 ? op->filter_w : in_w - x0;
                for (int32_t c = 0; c < ch; c++) {
                    int32_t acc = is_max ? -128 : 0;
                    int32_t count = 0;
                    for (int32_t ky = ky0; ky < ky1; ky++) {
                        for (int32_t kx = kx0; kx < kx1; kx++) {
                            int32_t v = in[tfa_eng_nhwc(b, y0 + ky, x0 + kx, c, in_h, in_w, ch)];
                            if (is_max) {
                                acc = v > acc ? v : acc;
                            } else {
                                acc += v;
                            }
                            count++;
                        }
                    }
                    if (!is_max) {
                        if (count == 0) {
                            count = 1; /* empty window: TFLite fails the op; keep defined output */
                        }
                        acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
                    }
                    out[tfa_eng_nhwc(b, oy, ox, c, out_h, out_w, ch)] =
                        (int8_t)tfa_q_clamp(acc, op->act_min, op->act_max);
                }
            }
        }
    }
}
