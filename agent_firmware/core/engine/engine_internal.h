/* Private records of the engine, stored in the caller's arena. */
#ifndef TFA_ENGINE_INTERNAL_H
#define TFA_ENGINE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "dsp.h"
#include "fb.h"
#include "ops.h"
#include "tfa/engine.h"
#include "tfa/errors.h"

/* TFA_OP_<NAME> = builtin code, for every op of the table in ops.h. */
#define TFA_ENG_OP_ENUM(code, name, prepare, run, opt) TFA_OP_##name = (code),
enum { TFA_ENG_OP_TABLE(TFA_ENG_OP_ENUM) };
#undef TFA_ENG_OP_ENUM

/* One record per tensor, kept for the engine's life: only what prepare and the kernels read. Every
 * tensor has one (constants too: the kernels read their data and quantization through it), so it is
 * kept small (40 B on a 64-bit host, 32 B on the M4): the dims point into the model, the byte size is
 * derived (tfa_eng_bytes), and what only the planner needs lives in tfa_eng_tplan_t during init. */
typedef struct tfa_eng_tensor {
    const uint8_t *const_data; /* constant tensors: their bytes inside the model; else NULL */
    const int32_t *dims;       /* rank sizes: the model's shape vector, read in place (little-endian
                                * int32, 4-byte aligned: the engine requires a 4-byte aligned model) */
    uint32_t arena_offset;     /* planned tensors: offset in the activation region */
    uint32_t elements;
    float scale;               /* first (or only) scale; 0 if unquantized */
    int32_t zero_point;
    uint16_t scale_count;      /* number of scales (per-channel when > 1) */
    uint8_t rank;
    uint8_t type;
    uint8_t variable;          /* schema is_variable (SVDF state): planned for the model's whole life */
    uint8_t planned;           /* 1: has its own bytes in the activation region (not an alias) */
} tfa_eng_tensor_t;

/* Per-tensor facts needed only while the model is prepared and planned (init): an array at the tail
 * of the arena, which the activation region covers afterwards. */
typedef struct tfa_eng_tplan {
    uint32_t scales_at;        /* model offset of the float scale vector */
    int32_t first_use;         /* operator indices; graph inputs start at -1 */
    int32_t last_use;
    uint16_t alias;            /* RESHAPE output sharing its input's bytes: input index + 1, else 0 */
    int8_t quantized_dim;
    uint8_t placed;            /* planner bookkeeping */
} tfa_eng_tplan_t;

typedef struct tfa_eng_op {
    int16_t code;              /* builtin code (the schema's codes fit in int16) */
    uint8_t kernel;            /* row of tfa_eng_kernels (ops.c) */
    uint8_t optimized;         /* TFA_ENGINE_KERNELS_DSP/_HOST: prepare chose that variant; 0: reference */
    tfa_fb_vec_t inputs;       /* int32 tensor indices, in the model (-1: optional absent) */
    tfa_fb_vec_t outputs;
    int32_t act_min, act_max;
    int32_t in_offset, in2_offset, out_offset; /* -input zero points, output zero point */
    int32_t mult, shift;       /* output (or single) multiplier */
    int32_t mult1, shift1, mult2, shift2; /* ADD: input multipliers */
    int32_t *pc_mult;          /* per-channel output multipliers (arena), or NULL */
    int8_t *pc_shift;          /* per-channel shifts fit in int8 (-31..30) */
    int32_t stride_w, stride_h, dil_w, dil_h, pad_w, pad_h, filter_w, filter_h;
    int32_t depth_mult;        /* DEPTHWISE multiplier; also FC units, SOFTMAX row length, MEAN count */
    int32_t left_shift;        /* ADD input shift; SOFTMAX/LOGISTIC input shift */
    int32_t diff_min, radius;  /* SOFTMAX smallest difference kept; LOGISTIC saturation radius */
    int32_t axis;              /* CONCATENATION axis; MEAN bit mask of reduced (4-D) dims */
    float fscale;              /* QUANTIZE from float / DEQUANTIZE scale */
    uint32_t scratch_bytes;    /* optimized variant's working memory while the op runs, or 0 */
    uint32_t scratch_offset;   /* its place in the activation region (planned, tfa_eng_plan) */
} tfa_eng_op_t;

/* Tensor pointer by index in an op's input/output vector; NULL for an absent optional (-1). */
static inline tfa_eng_tensor_t *tfa_eng_io(const tfa_engine_t *e, const tfa_fb_vec_t *v, uint32_t i)
{
    if (i >= v->count) {
        return (tfa_eng_tensor_t *)0;
    }
    int32_t t = tfa_fb_rd_i32(e->model + v->start + 4u * i);
    return t < 0 ? (tfa_eng_tensor_t *)0 : &e->tensors[t];
}

/* Bytes of a tensor: elements x the type's size (0 for a type the engine does not know). */
uint32_t tfa_eng_bytes(const tfa_eng_tensor_t *t);

/* Planning facts of tensor t (init only: e->tplan is NULL once the arena is planned). */
static inline tfa_eng_tplan_t *tfa_eng_tplan(const tfa_engine_t *e, const tfa_eng_tensor_t *t)
{
    return &e->tplan[t - e->tensors];
}

static inline const uint8_t *tfa_eng_cdata(const tfa_engine_t *e, const tfa_eng_tensor_t *t)
{
    return t->const_data ? t->const_data : e->activations + t->arena_offset;
}

static inline uint8_t *tfa_eng_data(const tfa_engine_t *e, const tfa_eng_tensor_t *t)
{
    return e->activations + t->arena_offset;
}

/* Offset of element [b][y][x][c] of an NHWC tensor (sizes validated at prepare: fits int32). */
static inline size_t tfa_eng_nhwc(int32_t b, int32_t y, int32_t x, int32_t c, int32_t h, int32_t w,
                                  int32_t ch)
{
    return (size_t)(((b * h + y) * w + x) * ch + c);
}

/* Largest multiply-accumulate depth accepted (taps per output): keeps every int32 sum of the kernels
 * free of overflow, 32768 * 255 * 255 < 2^31. */
#define TFA_ENG_MAX_TAPS 32768u

/* a + b with two's complement wrap-around (the reference adds biases in int32 without checks) */
static inline int32_t tfa_eng_wrap_add(int32_t a, int32_t b)
{
    return (int32_t)((uint32_t)a + (uint32_t)b);
}

/* a * b into *out, refusing a product that leaves uint32 (size products of dims, channels and
 * multipliers taken from the model): 0 or -TFA_ERR_MODEL_INVALID. */
static inline int tfa_eng_mul_u32(uint32_t a, uint32_t b, uint32_t *out)
{
    uint64_t p = (uint64_t)a * (uint64_t)b;
    if (p > 0xFFFFFFFFu) {
        return -TFA_ERR_MODEL_INVALID;
    }
    *out = (uint32_t)p;
    return 0;
}

/* Multiplier and shift of a real scale ratio (tfa_q_quantize_multiplier), refusing a ratio that is
 * negative, NaN or infinite and a shift outside [min_shift, max_shift] (the range the kernel's
 * fixed-point shifts are defined on): 0 or -TFA_ERR_MODEL_INVALID. */
int tfa_eng_multiplier(double real, int min_shift, int max_shift, int32_t *mult, int32_t *shift);

/* Persistent allocation from the front of the arena during prepare (8-byte aligned, zeroed). */
void *tfa_eng_alloc(tfa_engine_t *e, uint32_t bytes);

typedef int (*tfa_eng_prepare_fn)(tfa_engine_t *e, tfa_eng_op_t *op, uint32_t options);
typedef void (*tfa_eng_run_fn)(const tfa_engine_t *e, const tfa_eng_op_t *op);

/* An optimized kernel (kernels_*_dsp.c): select() looks at the prepared op and returns 1 when run()
 * handles it, after setting op->scratch_bytes (0 for none); run() then computes the reference
 * kernel's exact bytes. */
typedef struct tfa_eng_variant {
    int (*select)(const tfa_engine_t *e, tfa_eng_op_t *op);
    tfa_eng_run_fn run;
} tfa_eng_variant_t;

/* The optimized variants of one op: the Cortex-M4 DSP kernel (kernels_*_dsp.c, emulated on a hosted
 * build) and the host kernel (kernels_*_host.c: portable C shaped for the compiler's vectoriser, hosted
 * builds only). Either may be NULL. */
typedef struct tfa_eng_variants {
    const tfa_eng_variant_t *dsp;
    const tfa_eng_variant_t *host;
} tfa_eng_variants_t;

/* One row of the operator table (ops.h). */
typedef struct tfa_eng_kernel {
    int32_t code;
    const char *name;
    tfa_eng_prepare_fn prepare;
    tfa_eng_run_fn run;
    const tfa_eng_variants_t *optimized; /* NULL: the reference kernel only */
} tfa_eng_kernel_t;

/* Host kernels are compiled in hosted builds (the simulator's library, the tests), never into the
 * freestanding MCU images (their flash). */
#if defined(__STDC_HOSTED__) && __STDC_HOSTED__
#define TFA_ENG_HOST_KERNELS 1
#else
#define TFA_ENG_HOST_KERNELS 0
#endif

/* The optimized variants, compiled where TFA_ENG_OPTIMIZED (dsp.h) / TFA_ENG_HOST_KERNELS;
 * TFA_ENG_OPT(name) names both in the table of ops.h (a static compound literal), NULL where absent. */
#if TFA_ENG_OPTIMIZED
extern const tfa_eng_variant_t tfa_eng_add_dsp;
extern const tfa_eng_variant_t tfa_eng_conv_dsp;
extern const tfa_eng_variant_t tfa_eng_depthwise_dsp;
extern const tfa_eng_variant_t tfa_eng_fc_dsp;
extern const tfa_eng_variant_t tfa_eng_svdf_dsp;
#define TFA_ENG_DSP_VARIANT(name) (&tfa_eng_##name##_dsp)
#else
#define TFA_ENG_DSP_VARIANT(name) NULL
#endif
#if TFA_ENG_HOST_KERNELS
extern const tfa_eng_variant_t tfa_eng_add_host;
extern const tfa_eng_variant_t tfa_eng_conv_host;
extern const tfa_eng_variant_t tfa_eng_depthwise_host;
extern const tfa_eng_variant_t tfa_eng_fc_host;
extern const tfa_eng_variant_t tfa_eng_svdf_host;
#define TFA_ENG_HOST_VARIANT(name) (&tfa_eng_##name##_host)
#else
#define TFA_ENG_HOST_VARIANT(name) NULL
#endif
#define TFA_ENG_OPT(name) \
    (&(const tfa_eng_variants_t){TFA_ENG_DSP_VARIANT(name), TFA_ENG_HOST_VARIANT(name)})

/* Scratch memory of the running op (valid during its run only). */
static inline void *tfa_eng_scratch(const tfa_engine_t *e, const tfa_eng_op_t *op)
{
    return e->activations + op->scratch_offset;
}

extern const tfa_eng_kernel_t tfa_eng_kernels[];
extern const uint32_t tfa_eng_kernel_count;

/* Row of the table for a builtin code, or -1 when the engine does not run it. */
int32_t tfa_eng_kernel_find(int32_t code);
/* Prepare one op with its row's prepare (op->code set); picks the run variant. 0 or -TFA_ERR_x. */
int tfa_eng_prepare_op(tfa_engine_t *e, tfa_eng_op_t *op, uint32_t options);
/* Run one prepared op. */
void tfa_eng_run_op(const tfa_engine_t *e, const tfa_eng_op_t *op);
/* Plan the activation region; sets arena offsets and returns its size in *bytes. */
int tfa_eng_plan(tfa_engine_t *e, uint8_t *scratch, uint32_t scratch_size, uint32_t *bytes);

/* Kernels (kernels_*.c). */
int tfa_eng_prepare_fc(tfa_engine_t *e, tfa_eng_op_t *op, uint32_t options);
void tfa_eng_run_fc(const tfa_engine_t *e, const tfa_eng_op_t *op);
int tfa_eng_prepare_conv(tfa_engine_t *e, tfa_eng_op_t *op, uint32_t options);
void tfa_eng_run_conv(const tfa_engine_t *e, const tfa_eng_op_t *op);
void tfa_eng_run_depthwise(const tfa_engine_t *e, const tfa_eng_op_t *op);
int tfa_eng_prepare_pool(tfa_engine_t *e, tfa_eng_op_t *op, uint32_t options);
void tfa_eng_run_pool(const tfa_engine_t *e, const tfa_eng_op_t *op);
int tfa_eng_prepare_binary(tfa_engine_t *e, tfa_eng_op_t *op, uint32_t options);
void tfa_eng_run_binary(const tfa_engine_t *e, const tfa_eng_op_t *op);
int tfa_eng_prepare_softmax(tfa_engine_t *e, tfa_eng_op_t *op, uint32_t options);
void tfa_eng_run_softmax(const tfa_engine_t *e, const tfa_eng_op_t *op);
int tfa_eng_prepare_logistic(tfa_engine_t *e, tfa_eng_op_t *op, uint32_t options);
void tfa_eng_run_logistic(const tfa_engine_t *e, const tfa_eng_op_t *op);
int tfa_eng_prepare_shape_op(tfa_engine_t *e, tfa_eng_op_t *op, uint32_t options);
void tfa_eng_run_shape_op(const tfa_engine_t *e, const tfa_eng_op_t *op);
int tfa_eng_prepare_mean(tfa_engine_t *e, tfa_eng_op_t *op, uint32_t options);
void tfa_eng_run_mean(const tfa_engine_t *e, const tfa_eng_op_t *op);
int tfa_eng_prepare_quantize(tfa_engine_t *e, tfa_eng_op_t *op, uint32_t options);
int tfa_eng_prepare_split(tfa_engine_t *e, tfa_eng_op_t *op, uint32_t options);
void tfa_eng_run_split(const tfa_engine_t *e, const tfa_eng_op_t *op);
int tfa_eng_prepare_strided_slice(tfa_engine_t *e, tfa_eng_op_t *op, uint32_t options);
void tfa_eng_run_strided_slice(const tfa_engine_t *e, const tfa_eng_op_t *op);
int tfa_eng_prepare_hard_swish(tfa_engine_t *e, tfa_eng_op_t *op, uint32_t options);
void tfa_eng_run_hard_swish(const tfa_engine_t *e, const tfa_eng_op_t *op);
int tfa_eng_prepare_resize_nearest(tfa_engine_t *e, tfa_eng_op_t *op, uint32_t options);
void tfa_eng_run_resize_nearest(const tfa_engine_t *e, const tfa_eng_op_t *op);
int tfa_eng_prepare_transpose_conv(tfa_engine_t *e, tfa_eng_op_t *op, uint32_t options);
int tfa_eng_prepare_svdf(tfa_engine_t *e, tfa_eng_op_t *op, uint32_t options);
void tfa_eng_run_svdf(const tfa_engine_t *e, const tfa_eng_op_t *op);
void tfa_eng_run_transpose_conv(const tfa_engine_t *e, const tfa_eng_op_t *op);
void tfa_eng_run_quantize(const tfa_engine_t *e, const tfa_eng_op_t *op);

/* Output size check and leading padding of a 2-D window op (kernels_conv.c); uses op's filter,
 * stride and dilation fields. */
int tfa_eng_conv_geometry(tfa_eng_op_t *op, uint8_t padding, const tfa_eng_tensor_t *in,
                          const tfa_eng_tensor_t *out);

/* Shared prepare helpers (engine.c). */
int tfa_eng_check(const tfa_eng_tensor_t *t, uint8_t type, int need_data);
int tfa_eng_same_shape(const tfa_eng_tensor_t *a, const tfa_eng_tensor_t *b);
/* Per-channel multipliers of conv-like ops: input*filter[c]/output scales, as TFLite computes them. */
int tfa_eng_channel_multipliers(tfa_engine_t *e, tfa_eng_op_t *op, const tfa_eng_tensor_t *in,
                                const tfa_eng_tensor_t *filter, const tfa_eng_tensor_t *out,
                                uint32_t channels);
/* Scale i of the tensor's scale vector; prepare only (it reads e->tplan). */
float tfa_eng_scale_at(const tfa_engine_t *e, const tfa_eng_tensor_t *t, uint32_t i);

#endif
