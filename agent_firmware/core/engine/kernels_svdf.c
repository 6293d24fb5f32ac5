/* SVDF, int8 input and output (TFLM's integer SVDF reference, svdf_common.cc): a feature stage, int8
 * input x int8 weights_feature, requantized into the newest column of the activation state (a variable
 * tensor kept across invocations, int16 with int16 time weights or int8 with int8 ones), then a time
 * stage, the state's rows x weights_time, summed per unit over rank filters with the bias and
 * requantized to the output.
 *
 * TFLM writes the time sums and the unit sums into two int32 scratch buffers; here each unit's sum is
 * accumulated directly (int32 sums wrap identically in any order), so the op needs no scratch. Like
 * TFLM's int8 path, the fused activation of the options is not applied. */
#include <string.h>

#include "engine_internal.h"
#include "quant.h"
#include "tfa/errors.h"

enum { SVDF_RANK = 0 };
enum { IN_INPUT = 0, IN_FEATURE = 1, IN_TIME = 2, IN_BIAS = 3, IN_STATE = 4 };

/* Op record fields used: filter_w = input size, filter_h = memory size, depth_mult = rank, axis =
 * filters, in2_offset = state zero point, mult/shift = feature -> state scale, mult2/shift2 = state x
 * time -> output scale. */

int tfa_eng_prepare_svdf(tfa_engine_t *e, tfa_eng_op_t *op, uint32_t options)
{
    tfa_fb_t fb = {e->model, e->model_len};
    if (op->inputs.count != 5) {
        return -TFA_ERR_UNSUPPORTED_OP;
    }
    const tfa_eng_tensor_t *in = tfa_eng_io(e, &op->inputs, IN_INPUT);
    const tfa_eng_tensor_t *wf = tfa_eng_io(e, &op->inputs, IN_FEATURE);
    const tfa_eng_tensor_t *wt = tfa_eng_io(e, &op->inputs, IN_TIME);
    const tfa_eng_tensor_t *bias = tfa_eng_io(e, &op->inputs, IN_BIAS);
    const tfa_eng_tensor_t *state = tfa_eng_io(e, &op->inputs, IN_STATE);
    const tfa_eng_tensor_t *out = tfa_eng_io(e, &op->outputs, 0);
    int32_t rank = 0;
    int rc = tfa_eng_check(in, TFA_TYPE_INT8, 0);
    rc = rc ? rc : tfa_eng_check(wf, TFA_TYPE_INT8, 1);
    rc = rc ? rc : (wt == NULL ? -TFA_ERR_UNSUPPORTED_OP : tfa_eng_check(wt, wt->type, 1));
    /* TFLM reads the bias scale unconditionally: a model without bias does not run there */
    rc = rc ? rc : tfa_eng_check(bias, TFA_TYPE_INT32, 1);
    rc = rc ? rc : tfa_eng_check(out, TFA_TYPE_INT8, 0);
    rc = rc ? rc : (options != 0 ? tfa_fb_i32(&fb, options, SVDF_RANK, 0, &rank) : 0);
    if (rc != 0) {
        return rc;
    }
    /* the state has the time weights' type (TFLM picks the int16 or int8 variant by weights_time) */
    if ((wt->type != TFA_TYPE_INT16 && wt->type != TFA_TYPE_INT8) || state == NULL ||
        state->type != wt->type || !state->variable || state->const_data != NULL) {
        return -TFA_ERR_UNSUPPORTED_OP;
    }
    if (in->scale_count == 0 || wf->scale_count != 1 || wt->scale_count != 1 || state->scale_count == 0 ||
        out->scale_count == 0) {
        return -TFA_ERR_UNSUPPORTED_OP; /* per-tensor quantization only, as TFLM */
    }
    if (in->rank != 2 || wf->rank != 2 || wt->rank != 2 || state->rank != 2 || out->rank != 2 || rank <= 0) {
        return -TFA_ERR_MODEL_INVALID;
    }
    const int32_t batch = in->dims[0], input_size = in->dims[1];
    const int32_t filters = wf->dims[0], memory = wt->dims[1];
    if (batch <= 0 || input_size <= 0 || filters <= 0 || memory <= 0 || filters % rank != 0 ||
        wf->dims[1] != input_size || wt->dims[0] != filters || out->dims[0] != batch ||
        out->dims[1] != filters / rank || bias->elements != (uint32_t)(filters / rank) ||
        state->dims[0] != batch || (int64_t)state->dims[1] != (int64_t)memory * filters) {
        return -TFA_ERR_MODEL_INVALID;
    }
    /* int32 sums stay exact: input_size * 128 * 255, and each time product fits (wrapping sums
     * below as TFLM's) */
    if ((uint32_t)input_size > TFA_ENG_MAX_TAPS) {
        return -TFA_ERR_UNSUPPORTED_OP;
    }
    /* TFLM: |bias scale - state scale * time scale| < 1e-5 (product in double: the interpreter
     * refuses a float product that is off by more, e.g. at large scales) */
    const double gap = (double)bias->scale - (double)state->scale * (double)wt->scale;
    if (!(gap < 1e-5 && gap > -1e-5)) {
        return -TFA_ERR_MODEL_INVALID;
    }
    /* the interpreter computes both ratios entirely in double: a float product or quotient moves the
     * multiplier by tens of units, which flips a result lying within ~1e-6 of a rounding tie (issue 15,
     * svdf-102: one state value 1 off, an output 1 LSB off 6 invocations later) */
    const double scale1 = (double)in->scale * (double)wf->scale / (double)state->scale;
    const double scale2 = (double)state->scale * (double)wt->scale / (double)out->scale;
    rc = tfa_eng_multiplier(scale1, -31, 30, &op->mult, &op->shift);
    rc = rc ? rc : tfa_eng_multiplier(scale2, -31, 30, &op->mult2, &op->shift2);
    if (rc != 0) {
        return rc;
    }
    op->in_offset = -in->zero_point;
    op->in2_offset = state->zero_point;
    op->out_offset = out->zero_point;
    op->filter_w = input_size;
    op->filter_h = memory;
    op->depth_mult = rank;
    op->axis = filters;
    e->mac_count += (uint64_t)batch * (uint64_t)filters * (uint64_t)(input_size + memory);
    return 0;
}

/* State element i (int16 or int8 storage). */
static inline int32_t prv_get(const uint8_t *s, int wide, size_t i)
{
    return wide ? ((const int16_t *)(const void *)s)[i] : ((const int8_t *)s)[i];
}

void tfa_eng_run_svdf(const tfa_engine_t *e, const tfa_eng_op_t *op)
{
    const tfa_eng_tensor_t *tin = tfa_eng_io(e, &op->inputs, IN_INPUT);
    const tfa_eng_tensor_t *twf = tfa_eng_io(e, &op->inputs, IN_FEATURE);
    const tfa_eng_tensor_t *twt = tfa_eng_io(e, &op->inputs, IN_TIME);
    const tfa_eng_tensor_t *tb = tfa_eng_io(e, &op->inputs, IN_BIAS);
    const tfa_eng_tensor_t *tst = tfa_eng_io(e, &op->inputs, IN_STATE);
    const tfa_eng_tensor_t *tout = tfa_eng_io(e, &op->outputs, 0);
    const int8_t *in = (const int8_t *)tfa_eng_cdata(e, tin);
    const int8_t *wf = (const int8_t *)twf->const_data;
    const uint8_t *wt = twt->const_data;
    const uint8_t *bias = tb->const_data;
    uint8_t *state = tfa_eng_data(e, tst);
    int8_t *out = (int8_t *)tfa_eng_data(e, tout);
    const int wide = tst->type == TFA_TYPE_INT16;
    const size_t esize = wide ? 2u : 1u;
    const int32_t batch = tin->dims[0], input_size = op->filter_w, memory = op->filter_h;
    const int32_t rank = op->depth_mult, filters = op->axis, units = filters / rank;
    const int32_t state_zp = op->in2_offset;
    const int32_t lo = wide ? INT16_MIN : INT8_MIN, hi = wide ? INT16_MAX : INT8_MAX;
    const size_t total = (size_t)batch * (size_t)filters * (size_t)memory;

    /* every row moves one step back in time; the element carried over a row boundary is the newest
     * column of the row before, overwritten below */
    memmove(state, state + esize, (total - 1u) * esize);

    for (int32_t b = 0; b < batch; b++) {
        const int8_t *x = in + (size_t)b * (size_t)input_size;
        for (int32_t f = 0; f < filters; f++) {
            const int8_t *w = wf + (size_t)f * (size_t)input_size;
            int32_t acc = 0;
            for (int32_t c = 0; c < input_size; c++) {
                acc += (int32_t)w[c] * ((int32_t)x[c] + op->in_offset);
            }
            /* clamped to the state type's range, THEN offset by its zero point and narrowed with
             * wrap-around, as the tflite-micro interpreter we compare with does (later TFLM sources
             * add the zero point first; the two agree for an int16 state, whose zero point is 0) */
            acc = tfa_q_clamp(tfa_q_mul_by_quantized(acc, op->mult, op->shift), lo, hi) + state_zp;
            const size_t at = ((size_t)b * (size_t)filters + (size_t)f) * (size_t)memory + (size_t)memory - 1u;
            if (wide) {
                ((int16_t *)(void *)state)[at] = (int16_t)(uint16_t)((uint32_t)acc & 0xFFFFu);
            } else {
                ((int8_t *)state)[at] = (int8_t)(uint8_t)((uint32_t)acc & 0xFFu);
            }
        }
    }

    for (int32_t b = 0; b < batch; b++) {
        for (int32_t u = 0; u < units; u++) {
            int32_t acc = tfa_fb_rd_i32(bias + 4u * (uint32_t)u);
            for (int32_t r = 0; r < rank; r++) {
                const int32_t f = u * rank + r;
                const size_t row = (size_t)f * (size_t)memory;
                const size_t srow = ((size_t)b * (size_t)filters + (size_t)f) * (size_t)memory;
                uint32_t sum = 0; /* TFLM's int32 sum, wrapping */
                for (int32_t j = 0; j < memory; j++) {
                    const int32_t wv = wide ? (int16_t)tfa_fb_rd_u16(wt + 2u * (row + (size_t)j))
                                            : (int8_t)wt[row + (size_t)j];
                    sum += (uint32_t)(wv * (prv_get(state, wide, srow + (size_t)j) - state_zp));
                }
                acc = tfa_eng_wrap_add(acc, (int32_t)sum);
            }
            acc = tfa_eng_wrap_add(tfa_q_mul_by_quantized(acc, op->mult2, op->shift2), op->out_offset);
            out[(size_t)b * (size_t)units + (size_t)u] = (int8_t)tfa_q_clamp(acc, INT8_MIN, INT8_MAX);
        }
    }
}
