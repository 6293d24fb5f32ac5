/* Engine entry points: model parsing, per-op preparation, arena layout, invoke. See tfa/engine.h. */
#include <string.h>

#include "engine_internal.h"
#include "quant.h"
#include "tfa/errors.h"

/* Schema field ids (tensorflow/lite/schema/schema.fbs). */
enum { MODEL_OPCODES = 1, MODEL_SUBGRAPHS = 2, MODEL_BUFFERS = 4 };
enum { OPCODE_DEPRECATED = 0, OPCODE_BUILTIN = 3 };
enum { SG_TENSORS = 0, SG_INPUTS = 1, SG_OUTPUTS = 2, SG_OPERATORS = 3 };
enum { TENSOR_SHAPE = 0, TENSOR_TYPE = 1, TENSOR_BUFFER = 2, TENSOR_QUANT = 4, TENSOR_VARIABLE = 5,
       TENSOR_SPARSITY = 6 };
enum { QUANT_SCALE = 2, QUANT_ZERO_POINT = 3, QUANT_DIM = 6 };
enum { OP_OPCODE_INDEX = 0, OP_INPUTS = 1, OP_OUTPUTS = 2, OP_OPTIONS = 4 };
enum { BUFFER_DATA = 0, BUFFER_OFFSET = 1, BUFFER_SIZE = 2 };

static uint32_t prv_align(uint32_t v)
{
    return (v + (TFA_ENGINE_ARENA_ALIGN - 1u)) & ~(TFA_ENGINE_ARENA_ALIGN - 1u);
}

void *tfa_eng_alloc(tfa_engine_t *e, uint32_t bytes)
{
    /* records hold pointers and int32s: 8-byte alignment is enough (the planned region is 16) */
    uint32_t at = (e->arena_used + 7u) & ~7u;
    /* during init the planning records hold the arena's tail: allocations stay below them */
    const uint32_t limit = e->tplan != NULL ? (uint32_t)((uint8_t *)e->tplan - e->arena) : e->arena_size;
    if (at > limit || bytes > limit - at) {
        return NULL;
    }
    e->arena_used = at + bytes;
    memset(e->arena + at, 0, bytes);
    return e->arena + at;
}

static uint32_t prv_type_size(uint8_t type)
{
    switch (type) {
    case TFA_TYPE_FLOAT32:
    case TFA_TYPE_INT32:
        return 4;
    case TFA_TYPE_INT64:
        return 8;
    case TFA_TYPE_INT16:
        return 2;
    case TFA_TYPE_UINT8:
    case TFA_TYPE_INT8:
        return 1;
    default:
        return 0;
    }
}

uint32_t tfa_eng_bytes(const tfa_eng_tensor_t *t)
{
    return t->elements * prv_type_size(t->type); /* elements * size < 2^31: checked at parse */
}

int tfa_eng_check(const tfa_eng_tensor_t *t, uint8_t type, int need_data)
{
    if (t == NULL || t->type != type) {
        return -TFA_ERR_UNSUPPORTED_OP;
    }
    if (need_data && t->const_data == NULL) {
        return -TFA_ERR_UNSUPPORTED_OP; /* weights must be constant */
    }
    return 0;
}

int tfa_eng_same_shape(const tfa_eng_tensor_t *a, const tfa_eng_tensor_t *b)
{
    if (a->rank != b->rank) {
        return 0;
    }
    for (uint32_t i = 0; i < a->rank; i++) {
        if (a->dims[i] != b->dims[i]) {
            return 0;
        }
    }
    return 1;
}

float tfa_eng_scale_at(const tfa_engine_t *e, const tfa_eng_tensor_t *t, uint32_t i)
{
    union {
        uint32_t u;
        float f;
    } v = {.u = tfa_fb_rd_u32(e->model + tfa_eng_tplan(e, t)->scales_at + 4u * i)};
    return v.f;
}

int tfa_eng_multiplier(double real, int min_shift, int max_shift, int32_t *mult, int32_t *shift)
{
    if (!(real >= 0.0) || real > 1.7976931348623157e308) { /* negative, NaN, infinite */
        return -TFA_ERR_MODEL_INVALID;
    }
    int s;
    tfa_q_quantize_multiplier(real, mult, &s);
    if (s < min_shift || s > max_shift) {
        return -TFA_ERR_MODEL_INVALID;
    }
    *shift = s;
    return 0;
}

int tfa_eng_channel_multipliers(tfa_engine_t *e, tfa_eng_op_t *op, const tfa_eng_tensor_t *in,
                                const tfa_eng_tensor_t *filter, const tfa_eng_tensor_t *out,
                                uint32_t channels)
{
    if (filter->scale_count != 1 && filter->scale_count != channels) {
        return -TFA_ERR_MODEL_INVALID;
    }
    const int32_t qdim = tfa_eng_tplan(e, filter)->quantized_dim;
    if (filter->scale_count > 1 &&
        (qdim < 0 || qdim >= filter->rank || filter->dims[qdim] != (int32_t)channels)) {
        return -TFA_ERR_MODEL_INVALID; /* scales must run along the output channels */
    }
    if (in->scale_count == 0 || out->scale_count == 0 || filter->scale_count == 0) {
        return -TFA_ERR_UNSUPPORTED_OP; /* not quantized */
    }
    uint32_t mult_bytes;
    if (tfa_eng_mul_u32(4u, channels, &mult_bytes) != 0) {
        return -TFA_ERR_MODEL_INVALID;
    }
    op->pc_mult = tfa_eng_alloc(e, mult_bytes);
    op->pc_shift = tfa_eng_alloc(e, channels);
    if (op->pc_mult == NULL || op->pc_shift == NULL) {
        return -TFA_ERR_ARENA_EXHAUSTED;
    }
    for (uint32_t c = 0; c < channels; c++) {
        /* only the first scale is checked at parse: every per-channel one must be finite, >= 0 */
        float fs = tfa_eng_scale_at(e, filter, filter->scale_count > 1 ? c : 0);
        if (!(fs >= 0.0f) || fs > 1e30f) {
            return -TFA_ERR_MODEL_INVALID;
        }
        double eff = (double)in->scale * (double)fs / (double)out->scale;
        int32_t mult;
        int32_t shift;
        /* the kernels' MultiplyByQuantizedMultiplier takes shifts -31..30 (int8 storage) */
        int rc = tfa_eng_multiplier(eff, -31, 30, &mult, &shift);
        if (rc != 0) {
            return rc;
        }
        op->pc_mult[c] = mult;
        op->pc_shift[c] = (int8_t)shift;
    }
    return 0;
}

/* Read one tensor table into its record. */
static int prv_parse_tensor(tfa_engine_t *e, const tfa_fb_t *fb, uint32_t table,
                            const tfa_fb_vec_t *buffers, tfa_eng_tensor_t *t)
{
    tfa_eng_tplan_t *tp = tfa_eng_tplan(e, t);
    tfa_fb_vec_t shape;
    uint8_t type;
    int32_t buffer;
    uint32_t quant;
    uint32_t sparsity;
    int rc = tfa_fb_vector(fb, table, TENSOR_SHAPE, 4, &shape);
    rc = rc ? rc : tfa_fb_u8(fb, table, TENSOR_TYPE, 0, &type);
    rc = rc ? rc : tfa_fb_i32(fb, table, TENSOR_BUFFER, 0, &buffer);
    rc = rc ? rc : tfa_fb_table(fb, table, TENSOR_QUANT, &quant);
    rc = rc ? rc : tfa_fb_table(fb, table, TENSOR_SPARSITY, &sparsity);
    rc = rc ? rc : tfa_fb_u8(fb, table, TENSOR_VARIABLE, 0, &t->variable);
    if (rc != 0) {
        return rc;
    }
    if (shape.count > TFA_ENGINE_MAX_DIMS) {
        return -TFA_ERR_UNSUPPORTED_OP;
    }
    if (((uintptr_t)(fb->buf + shape.start) & 3u) != 0) {
        return -TFA_ERR_MODEL_INVALID; /* dims are read in place as int32 */
    }
    t->type = type;
    t->rank = (uint8_t)shape.count;
    t->dims = (const int32_t *)(const void *)(fb->buf + shape.start);
    uint64_t elements = 1;
    for (uint32_t d = 0; d < shape.count; d++) {
        int32_t dim = tfa_fb_vec_i32(fb, &shape, d);
        if (dim < 0) {
            return -TFA_ERR_MODEL_INVALID;
        }
        elements *= (uint64_t)dim;
        if (elements > 0x40000000u) {
            return -TFA_ERR_MODEL_INVALID;
        }
    }
    if (elements * (prv_type_size(type) ? prv_type_size(type) : 1u) > 0x7FFFFFFFu) {
        return -TFA_ERR_MODEL_INVALID;
    }
    t->elements = (uint32_t)elements;
    tp->first_use = INT32_MAX;
    tp->last_use = -2;

    if (quant != 0) {
        tfa_fb_vec_t scales;
        tfa_fb_vec_t zps;
        rc = tfa_fb_vector(fb, quant, QUANT_SCALE, 4, &scales);
        rc = rc ? rc : tfa_fb_vector(fb, quant, QUANT_ZERO_POINT, 8, &zps);
        int32_t qdim;
        rc = rc ? rc : tfa_fb_i32(fb, quant, QUANT_DIM, 0, &qdim);
        if (rc != 0) {
            return rc;
        }
        if (scales.count > 0xFFFFu) {
            return -TFA_ERR_UNSUPPORTED_OP; /* more than 65535 channels */
        }
        /* out of range: -1, refused where per-channel scales need it (tfa_eng_channel_multipliers) */
        tp->quantized_dim = (int8_t)(qdim >= 0 && qdim < TFA_ENGINE_MAX_DIMS ? qdim : -1);
        if (scales.count > 0) {
            t->scale_count = (uint16_t)scales.count;
            tp->scales_at = scales.start;
            t->scale = tfa_eng_scale_at(e, t, 0);
            if (zps.count > 0) {
                int64_t zp = (int64_t)((uint64_t)tfa_fb_rd_u32(fb->buf + zps.start) |
                                       ((uint64_t)tfa_fb_rd_u32(fb->buf + zps.start + 4) << 32));
                int64_t lo = type == TFA_TYPE_INT8 ? -128 : -32768;
                int64_t hi = type == TFA_TYPE_INT8 ? 127 : 65535;
                if (zp < lo || zp > hi) {
                    return -TFA_ERR_MODEL_INVALID;
                }
                t->zero_point = (int32_t)zp;
            }
            if (!(t->scale > 0.0f) || t->scale > 1e30f) {
                return -TFA_ERR_MODEL_INVALID;
            }
        }
    }

    tfa_fb_vec_t data = {0, 0};
    if (buffer < 0 || (uint32_t)buffer >= (buffers->count ? buffers->count : 1u)) {
        return -TFA_ERR_MODEL_INVALID;
    }
    if (buffer > 0) {
        uint32_t btable;
        uint64_t offset;
        uint64_t size;
        rc = tfa_fb_vec_table(fb, buffers, (uint32_t)buffer, &btable);
        rc = rc ? rc : tfa_fb_vector(fb, btable, BUFFER_DATA, 1, &data);
        rc = rc ? rc : tfa_fb_u64(fb, btable, BUFFER_OFFSET, &offset);
        rc = rc ? rc : tfa_fb_u64(fb, btable, BUFFER_SIZE, &size);
        if (rc != 0) {
            return rc;
        }
        if (data.count == 0 && offset > 1) { /* large-model layout: data after the flatbuffer */
            if (offset > fb->len || size > fb->len - offset) {
                return -TFA_ERR_MODEL_INVALID;
            }
            data.start = (uint32_t)offset;
            data.count = (uint32_t)size;
        }
    }
    if (data.count > 0) {
        if (sparsity != 0) {
            return -TFA_ERR_UNSUPPORTED_OP;
        }
        if (data.count < tfa_eng_bytes(t) || prv_type_size(type) == 0) {
            return -TFA_ERR_MODEL_INVALID;
        }
        t->const_data = fb->buf + data.start;
    }
    return 0;
}

/* Builtin code of operator table op (schema: max of the deprecated int8 code and the int32 one). */
static int prv_op_code(const tfa_fb_t *fb, const tfa_fb_vec_t *opcodes, uint32_t op_table,
                       int32_t *code)
{
    int32_t idx;
    uint32_t oc;
    uint8_t dep;
    int32_t builtin;
    int rc = tfa_fb_i32(fb, op_table, OP_OPCODE_INDEX, 0, &idx);
    if (rc != 0 || idx < 0) {
        return rc ? rc : -TFA_ERR_MODEL_INVALID;
    }
    rc = tfa_fb_vec_table(fb, opcodes, (uint32_t)idx, &oc);
    rc = rc ? rc : tfa_fb_u8(fb, oc, OPCODE_DEPRECATED, 0, &dep);
    rc = rc ? rc : tfa_fb_i32(fb, oc, OPCODE_BUILTIN, 0, &builtin);
    if (rc != 0) {
        return rc;
    }
    int32_t deprecated = (int8_t)dep;
    *code = builtin > deprecated ? builtin : deprecated;
    return 0;
}

static int prv_index_vector(const tfa_engine_t *e, const tfa_fb_vec_t *v, int allow_absent)
{
    for (uint32_t i = 0; i < v->count; i++) {
        int32_t t = tfa_fb_rd_i32(e->model + v->start + 4u * i);
        if (t >= (int32_t)e->tensor_count || t < -1 || (t == -1 && !allow_absent)) {
            return -TFA_ERR_MODEL_INVALID;
        }
    }
    return 0;
}

static void prv_mark_use(const tfa_engine_t *e, const tfa_fb_vec_t *v, int32_t when)
{
    for (uint32_t i = 0; i < v->count; i++) {
        tfa_eng_tensor_t *t = tfa_eng_io(e, v, i);
        if (t == NULL) {
            continue;
        }
        tfa_eng_tplan_t *tp = tfa_eng_tplan(e, t);
        if (when < tp->first_use) {
            tp->first_use = when;
        }
        if (when > tp->last_use) {
            tp->last_use = when;
        }
    }
}

/* Variable tensors (SVDF state) start as TFLM's ResetVariableTensors leaves them: int8 ones filled
 * with their zero point, all others with 0 bytes. */
static void prv_reset_variables(tfa_engine_t *e)
{
    for (uint32_t i = 0; i < e->tensor_count; i++) {
        const tfa_eng_tensor_t *t = &e->tensors[i];
        if (t->variable && t->planned) {
            const int fill = t->type == TFA_TYPE_INT8 ? (int)(uint8_t)(int8_t)t->zero_point : 0;
            memset(tfa_eng_data(e, t), fill, tfa_eng_bytes(t));
        }
    }
}

int tfa_engine_reset(tfa_engine_t *e)
{
    if (e == NULL || !e->ready) {
        return -TFA_ERR_BAD_STATE;
    }
    prv_reset_variables(e);
    return 0;
}

static int prv_init(tfa_engine_t *e)
{
    tfa_fb_t fb = {e->model, e->model_len};
    uint32_t root;
    uint32_t sg;
    tfa_fb_vec_t opcodes;
    tfa_fb_vec_t subgraphs;
    tfa_fb_vec_t buffers;
    tfa_fb_vec_t tensors;
    tfa_fb_vec_t operators;
    tfa_fb_vec_t gin;
    tfa_fb_vec_t gout;
    int rc = tfa_fb_root(&fb, &root);
    rc = rc ? rc : tfa_fb_vector(&fb, root, MODEL_OPCODES, 4, &opcodes);
    rc = rc ? rc : tfa_fb_vector(&fb, root, MODEL_SUBGRAPHS, 4, &subgraphs);
    rc = rc ? rc : tfa_fb_vector(&fb, root, MODEL_BUFFERS, 4, &buffers);
    rc = rc ? rc : tfa_fb_vec_table(&fb, &subgraphs, 0, &sg);
    rc = rc ? rc : tfa_fb_vector(&fb, sg, SG_TENSORS, 4, &tensors);
    rc = rc ? rc : tfa_fb_vector(&fb, sg, SG_OPERATORS, 4, &operators);
    rc = rc ? rc : tfa_fb_vector(&fb, sg, SG_INPUTS, 4, &gin);
    rc = rc ? rc : tfa_fb_vector(&fb, sg, SG_OUTPUTS, 4, &gout);
    if (rc != 0) {
        return rc;
    }
    if (tensors.count == 0 || tensors.count > 0xFFFFu || operators.count == 0 || gin.count == 0 ||
        gout.count == 0) {
        return -TFA_ERR_MODEL_INVALID;
    }
    e->tensor_count = tensors.count;
    e->op_count = operators.count;
    e->inputs_vec = e->model + gin.start;
    e->outputs_vec = e->model + gout.start;
    e->input_count = gin.count;
    e->output_count = gout.count;

    /* Refuse unsupported ops before anything else, naming the first one. */
    for (uint32_t i = 0; i < operators.count; i++) {
        uint32_t ot;
        int32_t code = 0;
        rc = tfa_fb_vec_table(&fb, &operators, i, &ot);
        rc = rc ? rc : prv_op_code(&fb, &opcodes, ot, &code);
        if (rc != 0) {
            e->bad_op_index = (int32_t)i;
            return rc;
        }
        if (tfa_eng_kernel_find(code) < 0) {
            e->bad_op_code = code;
            e->bad_op_index = (int32_t)i;
            return -TFA_ERR_UNSUPPORTED_OP;
        }
    }

    uint32_t tensor_bytes;
    uint32_t op_bytes;
    if (tfa_eng_mul_u32((uint32_t)sizeof(tfa_eng_tensor_t), tensors.count, &tensor_bytes) != 0 ||
        tfa_eng_mul_u32((uint32_t)sizeof(tfa_eng_op_t), operators.count, &op_bytes) != 0) {
        return -TFA_ERR_MODEL_INVALID; /* a record array beyond 4 GiB (the op count is unbounded) */
    }
    /* Init-only tail: the planning records, then the planner's list of placed tensors (uint16 each);
     * both multiples of 16 bytes, so that an arena of exactly arena_used bytes puts the tail right
     * after the persistent records. */
    const uint32_t tplan_bytes = tensors.count * (uint32_t)sizeof(tfa_eng_tplan_t);
    const uint32_t order_bytes = prv_align(tensors.count * 2u);
    const uint32_t tail_bytes = prv_align(tplan_bytes) + order_bytes; /* tensors.count <= 65535 */
    if (tail_bytes > e->arena_size) {
        return -TFA_ERR_ARENA_EXHAUSTED;
    }
    uint8_t *tail = e->arena + ((e->arena_size - tail_bytes) & ~(TFA_ENGINE_ARENA_ALIGN - 1u));
    e->tplan = (tfa_eng_tplan_t *)(void *)tail;
    memset(tail, 0, tail_bytes);
    e->tensors = tfa_eng_alloc(e, tensor_bytes);
    e->ops = tfa_eng_alloc(e, op_bytes);
    if (e->tensors == NULL || e->ops == NULL) {
        return -TFA_ERR_ARENA_EXHAUSTED;
    }
    for (uint32_t i = 0; i < tensors.count; i++) {
        uint32_t tt;
        rc = tfa_fb_vec_table(&fb, &tensors, i, &tt);
        rc = rc ? rc : prv_parse_tensor(e, &fb, tt, &buffers, &e->tensors[i]);
        if (rc != 0) {
            return rc;
        }
    }
    if (prv_index_vector(e, &gin, 0) != 0 || prv_index_vector(e, &gout, 0) != 0) {
        return -TFA_ERR_MODEL_INVALID;
    }
    prv_mark_use(e, &gin, -1);

    for (uint32_t i = 0; i < operators.count; i++) {
        tfa_eng_op_t *op = &e->ops[i];
        uint32_t ot;
        uint32_t options;
        int32_t code = 0;
        e->bad_op_index = (int32_t)i;
        rc = tfa_fb_vec_table(&fb, &operators, i, &ot);
        rc = rc ? rc : prv_op_code(&fb, &opcodes, ot, &code);
        op->code = (int16_t)code; /* a code of the op table: checked above */
        rc = rc ? rc : tfa_fb_vector(&fb, ot, OP_INPUTS, 4, &op->inputs);
        rc = rc ? rc : tfa_fb_vector(&fb, ot, OP_OUTPUTS, 4, &op->outputs);
        rc = rc ? rc : tfa_fb_table(&fb, ot, OP_OPTIONS, &options);
        rc = rc ? rc : prv_index_vector(e, &op->inputs, 1);
        rc = rc ? rc : prv_index_vector(e, &op->outputs, 0);
        if (rc != 0) {
            return rc;
        }
        /* SPLIT is the one op with several outputs */
        if (op->inputs.count == 0 || op->outputs.count == 0 ||
            (op->outputs.count != 1 && op->code != TFA_OP_SPLIT)) {
            return -TFA_ERR_MODEL_INVALID;
        }
        prv_mark_use(e, &op->inputs, (int32_t)i);
        prv_mark_use(e, &op->outputs, (int32_t)i);
        for (uint32_t o = 0; o < op->outputs.count; o++) {
            const tfa_eng_tensor_t *t = tfa_eng_io(e, &op->outputs, o);
            if (t == NULL || t->const_data != NULL) {
                return -TFA_ERR_MODEL_INVALID; /* writing into the model */
            }
        }
        rc = tfa_eng_prepare_op(e, op, options);
        if (rc != 0) {
            if (rc == -TFA_ERR_UNSUPPORTED_OP) {
                e->bad_op_code = op->code;
            }
            return rc;
        }
    }
    e->bad_op_index = -1;
    prv_mark_use(e, &gout, (int32_t)operators.count);
    for (uint32_t i = 0; i < gin.count; i++) {
        if (tfa_eng_io(e, &gin, i)->const_data != NULL) {
            return -TFA_ERR_MODEL_INVALID;
        }
    }

    uint32_t base = prv_align(e->arena_used);
    if (base > (uint32_t)(tail - e->arena)) {
        return -TFA_ERR_ARENA_EXHAUSTED;
    }
    uint32_t activation_bytes = 0;
    rc = tfa_eng_plan(e, tail + prv_align(tplan_bytes), order_bytes, &activation_bytes);
    e->tplan = NULL; /* the activations may cover the tail from here on */
    if (rc != 0) {
        return rc;
    }
    e->activation_bytes = activation_bytes;
    /* the arena must hold the persistent records and the larger of the activations and the tail */
    const uint32_t region = activation_bytes > tail_bytes ? activation_bytes : tail_bytes;
    if (region > e->arena_size - base) {
        e->arena_needed = base + region;
        return -TFA_ERR_ARENA_EXHAUSTED;
    }
    e->activations = e->arena + base;
    e->arena_used = base + region;
    memset(e->activations, 0, activation_bytes);
    prv_reset_variables(e);
    return 0;
}

int tfa_engine_init(tfa_engine_t *e, const uint8_t *model, uint32_t len, uint8_t *arena,
                    uint32_t arena_size)
{
#if TFA_ENG_HOST_KERNELS
    return tfa_engine_init_kernels(e, model, len, arena, arena_size, TFA_ENGINE_KERNELS_HOST);
#else
    return tfa_engine_init_kernels(e, model, len, arena, arena_size, TFA_ENG_OPTIMIZED_DEFAULT);
#endif
}

static int prv_init_kernels(tfa_engine_t *e, const uint8_t *model, uint32_t len, uint8_t *arena,
                            uint32_t arena_size, int optimized)
{
    if (e == NULL) {
        return -TFA_ERR_MODEL_INVALID;
    }
    memset(e, 0, sizeof *e);
    if (optimized == TFA_ENGINE_KERNELS_DSP && TFA_ENG_OPTIMIZED) {
        e->use_optimized = TFA_ENGINE_KERNELS_DSP;
    } else if (optimized == TFA_ENGINE_KERNELS_HOST && TFA_ENG_HOST_KERNELS) {
        e->use_optimized = TFA_ENGINE_KERNELS_HOST;
    }
    e->bad_op_code = -1;
    e->bad_op_index = -1;
    if (model == NULL || arena == NULL) {
        return model == NULL ? -TFA_ERR_MODEL_INVALID : -TFA_ERR_ARENA_EXHAUSTED;
    }
    /* Align the arena start ourselves so that callers may pass any buffer. */
    uintptr_t mis = (uintptr_t)arena % TFA_ENGINE_ARENA_ALIGN;
    uint32_t skip = mis ? (uint32_t)(TFA_ENGINE_ARENA_ALIGN - mis) : 0u;
    if (arena_size < skip) {
        return -TFA_ERR_ARENA_EXHAUSTED;
    }
    e->model = model;
    e->model_len = len;
    e->arena = arena + skip;
    e->arena_size = arena_size - skip;
    if (((uintptr_t)model & 3u) != 0) {
        return -TFA_ERR_MODEL_INVALID; /* shapes are read in place as int32 (tfa/engine.h) */
    }
    int rc = prv_init(e);
    e->tplan = NULL;
    if (rc == 0) {
        e->arena_used += skip;
        e->ready = 1;
    } else if (e->arena_needed != 0) {
        e->arena_needed += skip;
    }
    return rc;
}

int tfa_engine_init_kernels(tfa_engine_t *e, const uint8_t *model, uint32_t len, uint8_t *arena,
                            uint32_t arena_size, int optimized)
{
    int rc = prv_init_kernels(e, model, len, arena, arena_size, optimized);
    if (rc == -TFA_ERR_ARENA_EXHAUSTED && e != NULL && e->use_optimized) {
        /* The optimized kernels' scratch did not fit: the reference kernels need no scratch, so a model
         * whose arena was sized by the host (reference kernels) still runs, only slower. */
        rc = prv_init_kernels(e, model, len, arena, arena_size, 0);
    }
    return rc;
}

int tfa_engine_arena_required(const uint8_t *model, uint32_t len, uint8_t *work, uint32_t work_size,
                              uint32_t *required)
{
    tfa_engine_t e;
    int rc = tfa_engine_init(&e, model, len, work, work_size);
    *required = rc == 0 ? e.arena_used : e.arena_needed;
    return rc;
}

static int prv_io_tensor(const tfa_engine_t *e, const uint8_t *vec, uint32_t count, uint32_t idx,
                         tfa_eng_tensor_t **t)
{
    if (e == NULL || !e->ready || idx >= count) {
        return -TFA_ERR_BAD_STATE;
    }
    *t = &e->tensors[tfa_fb_rd_i32(vec + 4u * idx)];
    return 0;
}

int tfa_engine_input(tfa_engine_t *e, uint32_t idx, uint8_t **data, uint32_t *bytes)
{
    tfa_eng_tensor_t *t;
    int rc = prv_io_tensor(e, e ? e->inputs_vec : NULL, e ? e->input_count : 0, idx, &t);
    if (rc == 0) {
        *data = tfa_eng_data(e, t);
        *bytes = tfa_eng_bytes(t);
    }
    return rc;
}

int tfa_engine_output(const tfa_engine_t *e, uint32_t idx, const uint8_t **data, uint32_t *bytes)
{
    tfa_eng_tensor_t *t;
    int rc = prv_io_tensor(e, e ? e->outputs_vec : NULL, e ? e->output_count : 0, idx, &t);
    if (rc == 0) {
        *data = tfa_eng_cdata(e, t);
        *bytes = tfa_eng_bytes(t);
    }
    return rc;
}

static void prv_info(const tfa_eng_tensor_t *t, tfa_tensor_info_t *info)
{
    memset(info, 0, sizeof *info);
    info->type = t->type;
    info->rank = t->rank;
    for (uint32_t d = 0; d < t->rank; d++) {
        info->dims[d] = t->dims[d];
    }
    info->bytes = tfa_eng_bytes(t);
    info->scale = t->scale;
    info->zero_point = t->zero_point;
}

int tfa_engine_input_info(const tfa_engine_t *e, uint32_t idx, tfa_tensor_info_t *info)
{
    tfa_eng_tensor_t *t;
    int rc = prv_io_tensor(e, e ? e->inputs_vec : NULL, e ? e->input_count : 0, idx, &t);
    if (rc == 0) {
        prv_info(t, info);
    }
    return rc;
}

int tfa_engine_output_info(const tfa_engine_t *e, uint32_t idx, tfa_tensor_info_t *info)
{
    tfa_eng_tensor_t *t;
    int rc = prv_io_tensor(e, e ? e->outputs_vec : NULL, e ? e->output_count : 0, idx, &t);
    if (rc == 0) {
        prv_info(t, info);
    }
    return rc;
}

int tfa_engine_invoke(tfa_engine_t *e)
{
    if (e == NULL || !e->ready) {
        return -TFA_ERR_BAD_STATE;
    }
    for (uint32_t i = 0; i < e->op_count; i++) {
        tfa_eng_run_op(e, &e->ops[i]);
    }
    return 0;
}

int32_t tfa_engine_op_code(const tfa_engine_t *e, uint32_t i)
{
    return (e != NULL && e->ready && i < e->op_count) ? e->ops[i].code : -1;
}

uint32_t tfa_engine_struct_size(void)
{
    return (uint32_t)sizeof(tfa_engine_t);
}
