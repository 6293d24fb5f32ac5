/* Data movement ops: RESHAPE and SQUEEZE (copies), PAD (int8, pad value = output zero point), CONCATENATION. */
#include <string.h>

#include "engine_internal.h"
#include "tfa/errors.h"

enum { CONCAT_AXIS = 0, CONCAT_ACTIVATION = 1 };

static int prv_prepare_pad(tfa_engine_t *e, tfa_eng_op_t *op)
{
    const tfa_eng_tensor_t *in = tfa_eng_io(e, &op->inputs, 0);
    const tfa_eng_tensor_t *pads = tfa_eng_io(e, &op->inputs, 1);
    const tfa_eng_tensor_t *out = tfa_eng_io(e, &op->outputs, 0);
    int rc = tfa_eng_check(in, TFA_TYPE_INT8, 0);
    rc = rc ? rc : tfa_eng_check(out, TFA_TYPE_INT8, 0);
    rc = rc ? rc : tfa_eng_check(pads, TFA_TYPE_INT32, 1);
    if (rc != 0) {
        return rc;
    }
    if (in->rank > 4 || in->rank != out->rank || pads->elements != 2u * in->rank ||
        in->zero_point != out->zero_point || in->scale != out->scale) {
        return in->rank > 4 ? -TFA_ERR_UNSUPPORTED_OP : -TFA_ERR_MODEL_INVALID;
    }
    for (uint32_t d = 0; d < in->rank; d++) {
        int32_t before = tfa_fb_rd_i32(pads->const_data + 8u * d);
        int32_t after = tfa_fb_rd_i32(pads->const_data + 8u * d + 4u);
        if (before < 0 || after < 0 || (int64_t)in->dims[d] + before + after != out->dims[d]) {
            return -TFA_ERR_MODEL_INVALID;
        }
    }
    e->mac_count += out->elements;
    return 0;
}

int tfa_eng_prepare_shape_op(tfa_engine_t *e, tfa_eng_op_t *op, uint32_t options)
{
    tfa_fb_t fb = {e->model, e->model_len};
    const tfa_eng_tensor_t *in = tfa_eng_io(e, &op->inputs, 0);
    const tfa_eng_tensor_t *out = tfa_eng_io(e, &op->outputs, 0);
    if (in == NULL) {
        return -TFA_ERR_MODEL_INVALID;
    }
    if (op->code == TFA_OP_PAD) {
        return prv_prepare_pad(e, op);
    }
    if (op->code == TFA_OP_RESHAPE || op->code == TFA_OP_SQUEEZE) {
        if (in->type != out->type || tfa_eng_bytes(in) != tfa_eng_bytes(out)) {
            return in->type != out->type ? -TFA_ERR_UNSUPPORTED_OP : -TFA_ERR_MODEL_INVALID;
        }
        return 0;
    }
    /* CONCATENATION: int8 copies, all inputs sharing the output quantization */
    int32_t axis = 0;
    uint8_t act = 0;
    int rc = tfa_eng_check(out, TFA_TYPE_INT8, 0);
    if (rc == 0 && options != 0) {
        rc = tfa_fb_i32(&fb, options, CONCAT_AXIS, 0, &axis);
        rc = rc ? rc : tfa_fb_u8(&fb, options, CONCAT_ACTIVATION, 0, &act);
    }
    if (rc != 0) {
        return rc;
    }
    if (act != 0) {
        return -TFA_ERR_UNSUPPORTED_OP;
    }
    if (axis < 0) {
        axis += out->rank;
    }
    if (axis < 0 || axis >= out->rank) {
        return -TFA_ERR_MODEL_INVALID;
    }
    int64_t sum = 0; /* many inputs could overflow an int32 sum of their extents */
    for (uint32_t i = 0; i < op->inputs.count; i++) {
        const tfa_eng_tensor_t *t = tfa_eng_io(e, &op->inputs, i);
        rc = tfa_eng_check(t, TFA_TYPE_INT8, 0);
        if (rc != 0) {
            return rc;
        }
        if (t->rank != out->rank) {
            return -TFA_ERR_MODEL_INVALID;
        }
        for (int32_t d = 0; d < out->rank; d++) {
            if (d != axis && t->dims[d] != out->dims[d]) {
                return -TFA_ERR_MODEL_INVALID;
            }
        }
        sum += t->dims[axis];
    }
    if (sum != out->dims[axis]) {
        return -TFA_ERR_MODEL_INVALID;
    }
    op->axis = axis;
    return 0;
}

static void prv_run_pad(const tfa_engine_t *e, const tfa_eng_op_t *op)
{
    const tfa_eng_tensor_t *tin = tfa_eng_io(e, &op->inputs, 0);
    const tfa_eng_tensor_t *tp = tfa_eng_io(e, &op->inputs, 1);
    const tfa_eng_tensor_t *tout = tfa_eng_io(e, &op->outputs, 0);
    const int8_t *in = (const int8_t *)tfa_eng_cdata(e, tin);
    int8_t *out = (int8_t *)tfa_eng_data(e, tout);
    int32_t di[4], dout[4], before[4];
    int shift = 4 - tin->rank;
    for (int d = 0; d < 4; d++) {
        int src = d - shift;
        di[d] = src >= 0 ? tin->dims[src] : 1;
        dout[d] = src >= 0 ? tout->dims[src] : 1;
        before[d] = src >= 0 ? tfa_fb_rd_i32(tp->const_data + 8u * (uint32_t)src) : 0;
    }
    memset(out, (int)(int8_t)tout->zero_point, tfa_eng_bytes(tout));
    const int8_t *src = in;
    for (int32_t a = 0; a < di[0]; a++) {
        for (int32_t b = 0; b < di[1]; b++) {
            for (int32_t c = 0; c < di[2]; c++) {
                size_t o = tfa_eng_nhwc(a + before[0], b + before[1], c + before[2], before[3], dout[1],
                                        dout[2], dout[3]);
                memcpy(out + o, src, (size_t)di[3]);
                src += di[3];
            }
        }
    }
}

void tfa_eng_run_shape_op(const tfa_engine_t *e, const tfa_eng_op_t *op)
{
    const tfa_eng_tensor_t *tout = tfa_eng_io(e, &op->outputs, 0);
    uint8_t *out = tfa_eng_data(e, tout);
    if (op->code == TFA_OP_PAD) {
        prv_run_pad(e, op);
        return;
    }
    if (op->code == TFA_OP_RESHAPE || op->code == TFA_OP_SQUEEZE) {
        const tfa_eng_tensor_t *tin = tfa_eng_io(e, &op->inputs, 0);
        memmove(out, tfa_eng_cdata(e, tin), tfa_eng_bytes(tout));
        return;
    }
    size_t outer = 1;
    size_t inner = 1;
    for (int32_t d = 0; d < op->axis; d++) {
        outer *= (size_t)tout->dims[d];
    }
    for (int32_t d = op->axis + 1; d < tout->rank; d++) {
        inner *= (size_t)tout->dims[d];
    }
    size_t o = 0;
    for (size_t k = 0; k < outer; k++) {
        for (uint32_t i = 0; i < op->inputs.count; i++) {
            const tfa_eng_tensor_t *t = tfa_eng_io(e, &op->inputs, i);
            size_t chunk = (size_t)t->dims[op->axis] * inner;
            memcpy(out + o, tfa_eng_cdata(e, t) + k * chunk, chunk);
            o += chunk;
        }
    }
}
