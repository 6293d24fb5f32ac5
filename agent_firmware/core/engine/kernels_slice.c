/* Slicing ops, int8 byte copies like TFLM's reference kernels: SPLIT (equal parts along a constant
 * axis) and STRIDED_SLICE (constant begin/end/strides, begin/end/shrink masks). */
#include <string.h>

#include "engine_internal.h"
#include "tfa/errors.h"

enum { SS_BEGIN_MASK = 0, SS_END_MASK = 1, SS_ELLIPSIS_MASK = 2, SS_NEW_AXIS_MASK = 3, SS_SHRINK_MASK = 4,
       SS_OFFSET = 5 };

/* SPLIT: inputs (axis, input), outputs the parts in order along the axis (op->axis). */
int tfa_eng_prepare_split(tfa_engine_t *e, tfa_eng_op_t *op, uint32_t options)
{
    (void)options; /* num_splits is the output count, checked below */
    const tfa_eng_tensor_t *axis_t = tfa_eng_io(e, &op->inputs, 0);
    const tfa_eng_tensor_t *in = tfa_eng_io(e, &op->inputs, 1);
    int rc = tfa_eng_check(axis_t, TFA_TYPE_INT32, 1);
    rc = rc ? rc : tfa_eng_check(in, TFA_TYPE_INT8, 0);
    if (rc != 0) {
        return rc;
    }
    if (axis_t->elements != 1 || op->inputs.count != 2) {
        return -TFA_ERR_MODEL_INVALID;
    }
    int32_t axis = tfa_fb_rd_i32(axis_t->const_data);
    if (axis < 0) {
        axis += in->rank;
    }
    if (axis < 0 || axis >= in->rank) {
        return -TFA_ERR_MODEL_INVALID;
    }
    int64_t sum = 0;
    for (uint32_t i = 0; i < op->outputs.count; i++) {
        const tfa_eng_tensor_t *t = tfa_eng_io(e, &op->outputs, i);
        rc = tfa_eng_check(t, TFA_TYPE_INT8, 0);
        if (rc != 0) {
            return rc;
        }
        if (t->rank != in->rank || t->dims[axis] != tfa_eng_io(e, &op->outputs, 0)->dims[axis]) {
            return -TFA_ERR_MODEL_INVALID; /* TFLite splits into equal parts */
        }
        for (int32_t d = 0; d < in->rank; d++) {
            if (d != axis && t->dims[d] != in->dims[d]) {
                return -TFA_ERR_MODEL_INVALID;
            }
        }
        sum += t->dims[axis];
    }
    if (sum != in->dims[axis]) {
        return -TFA_ERR_MODEL_INVALID;
    }
    op->axis = axis;
    return 0;
}

void tfa_eng_run_split(const tfa_engine_t *e, const tfa_eng_op_t *op)
{
    const tfa_eng_tensor_t *tin = tfa_eng_io(e, &op->inputs, 1);
    const uint8_t *in = tfa_eng_cdata(e, tin);
    size_t outer = 1;
    size_t inner = 1;
    for (int32_t d = 0; d < op->axis; d++) {
        outer *= (size_t)tin->dims[d];
    }
    for (int32_t d = op->axis + 1; d < tin->rank; d++) {
        inner *= (size_t)tin->dims[d];
    }
    for (size_t k = 0; k < outer; k++) {
        for (uint32_t i = 0; i < op->outputs.count; i++) {
            const tfa_eng_tensor_t *t = tfa_eng_io(e, &op->outputs, i);
            size_t chunk = (size_t)t->dims[op->axis] * inner;
            memcpy(tfa_eng_data(e, t) + k * chunk, in, chunk);
            in += chunk;
        }
    }
}

static int32_t prv_clamp(int64_t v, int32_t lo, int32_t hi)
{
    return v < lo ? lo : (v > hi ? hi : (int32_t)v);
}

/* Start, stop and stride of every input axis, the way TFLite resolves masks, negative indices and
 * out-of-range bounds (strided_slice_logic: StartForAxis/StopForAxis). Returns the element count. */
static uint64_t prv_slice_axes(const tfa_engine_t *e, const tfa_eng_op_t *op, int32_t start[],
                               int32_t stop[], int32_t stride[], int32_t count[])
{
    const tfa_eng_tensor_t *in = tfa_eng_io(e, &op->inputs, 0);
    const uint8_t *b = tfa_eng_io(e, &op->inputs, 1)->const_data;
    const uint8_t *en = tfa_eng_io(e, &op->inputs, 2)->const_data;
    const uint8_t *st = tfa_eng_io(e, &op->inputs, 3)->const_data;
    const uint32_t begin_mask = (uint32_t)op->stride_w;
    const uint32_t end_mask = (uint32_t)op->stride_h;
    const uint32_t shrink_mask = (uint32_t)op->axis;
    uint64_t total = 1;
    for (uint32_t a = 0; a < in->rank; a++) {
        const int32_t size = in->dims[a];
        const int32_t s = tfa_fb_rd_i32(st + 4u * a);
        int64_t lo = tfa_fb_rd_i32(b + 4u * a);
        int64_t hi = tfa_fb_rd_i32(en + 4u * a);
        if (begin_mask & (1u << a)) {
            lo = s > 0 ? INT32_MIN : INT32_MAX;
        }
        lo += lo < 0 ? size : 0;
        lo = s > 0 ? prv_clamp(lo, 0, size) : prv_clamp(lo, -1, size - 1);
        if (shrink_mask & (1u << a)) {
            hi = lo + 1; /* a length-1 slice whatever the end says */
        } else {
            if (end_mask & (1u << a)) {
                hi = s > 0 ? INT32_MAX : INT32_MIN;
            }
            hi += hi < 0 ? size : 0;
            hi = s > 0 ? prv_clamp(hi, 0, size) : prv_clamp(hi, -1, size - 1);
        }
        if (size == 0) {
            lo = hi = 0;
        }
        int64_t n = s > 0 ? (hi - lo + s - 1) / s : (lo - hi + (-(int64_t)s) - 1) / (-(int64_t)s);
        n = n < 0 ? 0 : n;
        start[a] = (int32_t)lo;
        stop[a] = (int32_t)hi;
        stride[a] = s;
        count[a] = (int32_t)n;
        total *= (uint64_t)n;
    }
    return total;
}

/* STRIDED_SLICE: inputs (input, begin, end, strides), masks kept in stride_w (begin), stride_h (end),
 * axis (shrink). */
int tfa_eng_prepare_strided_slice(tfa_engine_t *e, tfa_eng_op_t *op, uint32_t options)
{
    tfa_fb_t fb = {e->model, e->model_len};
    const tfa_eng_tensor_t *in = tfa_eng_io(e, &op->inputs, 0);
    const tfa_eng_tensor_t *out = tfa_eng_io(e, &op->outputs, 0);
    int rc = op->inputs.count == 4 ? tfa_eng_check(in, TFA_TYPE_INT8, 0) : -TFA_ERR_MODEL_INVALID;
    rc = rc ? rc : tfa_eng_check(out, TFA_TYPE_INT8, 0);
    for (uint32_t i = 1; i < 4 && rc == 0; i++) {
        const tfa_eng_tensor_t *t = tfa_eng_io(e, &op->inputs, i);
        rc = tfa_eng_check(t, TFA_TYPE_INT32, 1);
        rc = rc ? rc : (t->rank == 1 && t->elements == in->rank ? 0 : -TFA_ERR_UNSUPPORTED_OP);
    }
    int32_t mask[6] = {0, 0, 0, 0, 0, 0};
    for (uint32_t f = 0; f < 6 && rc == 0 && options != 0; f++) {
        rc = tfa_fb_i32(&fb, options, f, 0, &mask[f]);
    }
    if (rc != 0) {
        return rc;
    }
    if (mask[SS_ELLIPSIS_MASK] != 0 || mask[SS_NEW_AXIS_MASK] != 0 || (mask[SS_OFFSET] & 0xFF) != 0) {
        return -TFA_ERR_UNSUPPORTED_OP; /* TFLM refuses these masks too */
    }
    if (in->zero_point != out->zero_point || in->scale != out->scale) {
        return -TFA_ERR_MODEL_INVALID;
    }
    const uint8_t *st = tfa_eng_io(e, &op->inputs, 3)->const_data;
    for (uint32_t a = 0; a < in->rank; a++) {
        if (tfa_fb_rd_i32(st + 4u * a) == 0) {
            return -TFA_ERR_MODEL_INVALID;
        }
    }
    op->stride_w = mask[SS_BEGIN_MASK];
    op->stride_h = mask[SS_END_MASK];
    op->axis = mask[SS_SHRINK_MASK];
    int32_t start[TFA_ENGINE_MAX_DIMS], stop[TFA_ENGINE_MAX_DIMS], stride[TFA_ENGINE_MAX_DIMS];
    int32_t count[TFA_ENGINE_MAX_DIMS];
    if (prv_slice_axes(e, op, start, stop, stride, count) != out->elements) {
        return -TFA_ERR_MODEL_INVALID;
    }
    /* the output shape is the counts without the shrunk axes */
    uint32_t o = 0;
    for (uint32_t a = 0; a < in->rank; a++) {
        if ((uint32_t)op->axis & (1u << a)) {
            continue;
        }
        if (o >= out->rank || out->dims[o] != count[a]) {
            return -TFA_ERR_MODEL_INVALID;
        }
        o++;
    }
    if (o != out->rank) {
        return -TFA_ERR_MODEL_INVALID;
    }
    e->mac_count += out->elements;
    return 0;
}

void tfa_eng_run_strided_slice(const tfa_engine_t *e, const tfa_eng_op_t *op)
{
    const tfa_eng_tensor_t *tin = tfa_eng_io(e, &op->inputs, 0);
    const tfa_eng_tensor_t *tout = tfa_eng_io(e, &op->outputs, 0);
    const int8_t *in = (const int8_t *)tfa_eng_cdata(e, tin);
    int8_t *out = (int8_t *)tfa_eng_data(e, tout);
    int32_t start[TFA_ENGINE_MAX_DIMS], stop[TFA_ENGINE_MAX_DIMS], stride[TFA_ENGINE_MAX_DIMS];
    int32_t count[TFA_ENGINE_MAX_DIMS], idx[TFA_ENGINE_MAX_DIMS];
    size_t step[TFA_ENGINE_MAX_DIMS];
    const uint64_t total = prv_slice_axes(e, op, start, stop, stride, count);
    const uint32_t rank = tin->rank;
    if (total == 0) {
        return;
    }
    size_t s = 1;
    for (uint32_t a = rank; a-- > 0;) {
        step[a] = s;
        s *= (size_t)tin->dims[a];
        idx[a] = 0;
    }
    /* odometer over the output elements, last axis fastest (row-major, as TFLite writes them) */
    for (uint64_t n = 0; n < total; n++) {
        ptrdiff_t off = 0;
        for (uint32_t a = 0; a < rank; a++) {
            off += (ptrdiff_t)(start[a] + (int64_t)idx[a] * stride[a]) * (ptrdiff_t)step[a];
        }
        out[n] = in[off];
        for (uint32_t a = rank; a-- > 0;) {
            if (++idx[a] < count[a]) {
                break;
            }
            idx[a] = 0;
        }
    }
}
