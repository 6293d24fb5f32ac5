/* RESIZE_NEAREST_NEIGHBOR, int8 NHWC: each output pixel copies the input pixel TFLite's reference
 * kernel picks, computed with the same float arithmetic (align_corners rounds, otherwise floor;
 * half_pixel_centers offsets by 0.5). */
#include <string.h>

#include "engine_internal.h"
#include "quant.h"
#include "tfa/errors.h"

enum { RESIZE_ALIGN_CORNERS = 0, RESIZE_HALF_PIXEL = 1 };

int tfa_eng_prepare_resize_nearest(tfa_engine_t *e, tfa_eng_op_t *op, uint32_t options)
{
    tfa_fb_t fb = {e->model, e->model_len};
    const tfa_eng_tensor_t *in = tfa_eng_io(e, &op->inputs, 0);
    const tfa_eng_tensor_t *size = tfa_eng_io(e, &op->inputs, 1);
    const tfa_eng_tensor_t *out = tfa_eng_io(e, &op->outputs, 0);
    uint8_t align = 0;
    uint8_t half = 0;
    int rc = tfa_eng_check(in, TFA_TYPE_INT8, 0);
    rc = rc ? rc : tfa_eng_check(out, TFA_TYPE_INT8, 0);
    rc = rc ? rc : tfa_eng_check(size, TFA_TYPE_INT32, 1); /* TFLM needs the size constant too */
    if (rc == 0 && options != 0) {
        rc = tfa_fb_u8(&fb, options, RESIZE_ALIGN_CORNERS, 0, &align);
        rc = rc ? rc : tfa_fb_u8(&fb, options, RESIZE_HALF_PIXEL, 0, &half);
    }
    if (rc != 0) {
        return rc;
    }
    if (in->rank != 4 || out->rank != 4 || size->elements != 2) {
        return -TFA_ERR_UNSUPPORTED_OP;
    }
    if (out->dims[0] != in->dims[0] || out->dims[3] != in->dims[3] ||
        out->dims[1] != tfa_fb_rd_i32(size->const_data) ||
        out->dims[2] != tfa_fb_rd_i32(size->const_data + 4) || out->dims[1] <= 0 || out->dims[2] <= 0 ||
        in->dims[1] <= 0 || in->dims[2] <= 0 || in->zero_point != out->zero_point || in->scale != out->scale) {
        return -TFA_ERR_MODEL_INVALID;
    }
    op->stride_w = align != 0;
    op->stride_h = half != 0;
    e->mac_count += out->elements;
    return 0;
}

/* TFLite's GetNearestNeighbor */
static int32_t prv_nearest(int32_t o, int32_t in_size, int32_t out_size, int align, int half)
{
    const float scale = (align && out_size > 1) ? (float)(in_size - 1) / (float)(out_size - 1)
                                                : (float)in_size / (float)out_size;
    const float pos = ((float)o + (half ? 0.5f : 0.0f)) * scale;
    /* pos >= 0, so the int conversion is the floor */
    int32_t v = align ? (int32_t)tfa_q_roundf(pos) : (int32_t)pos;
    v = v < in_size - 1 ? v : in_size - 1;
    return v < 0 ? 0 : v;
}

void tfa_eng_run_resize_nearest(const tfa_engine_t *e, const tfa_eng_op_t *op)
{
    const tfa_eng_tensor_t *tin = tfa_eng_io(e, &op->inputs, 0);
    const tfa_eng_tensor_t *tout = tfa_eng_io(e, &op->outputs, 0);
    const int8_t *in = (const int8_t *)tfa_eng_cdata(e, tin);
    int8_t *out = (int8_t *)tfa_eng_data(e, tout);
    const int32_t ih = tin->dims[1], iw = tin->dims[2], c = tin->dims[3];
    const int32_t oh = tout->dims[1], ow = tout->dims[2];
    for (int32_t b = 0; b < tout->dims[0]; b++) {
        for (int32_t y = 0; y < oh; y++) {
            const int32_t sy = prv_nearest(y, ih, oh, op->stride_w, op->stride_h);
            for (int32_t x = 0; x < ow; x++) {
                const int32_t sx = prv_nearest(x, iw, ow, op->stride_w, op->stride_h);
                memcpy(out + tfa_eng_nhwc(b, y, x, 0, oh, ow, c), in + tfa_eng_nhwc(b, sy, sx, 0, ih, iw, c),
                       (size_t)c);
            }
        }
    }
}
