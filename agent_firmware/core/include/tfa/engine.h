/* On-device int8 TFLite inference engine, bit-exact with TensorFlow Lite Micro's reference kernels.
 *
 * The engine runs a .tflite flatbuffer straight from memory (on a device: the active, memory-mapped
 * flash slot). Weights are read in place; nothing is copied into RAM except what must change at run
 * time. All run-time memory lives in ONE caller-owned arena:
 *
 *   [ tensor records | op records + per-channel multipliers | activations (greedy planned) ]
 *
 * While init prepares and plans, per-tensor planning records sit at the arena's tail, where the
 * activations go afterwards (arena_used covers the larger of the two needs).
 *
 * Usage:
 *   tfa_engine_t e;
 *   static uint8_t arena[64 * 1024];
 *   int rc = tfa_engine_init(&e, model, model_len, arena, sizeof arena);   // parse, prepare, plan
 *   if (rc == -TFA_ERR_UNSUPPORTED_OP) log(e.bad_op_code);
 *   tfa_engine_input(&e, 0, &in, &in_bytes);   memcpy(in, ...);
 *   tfa_engine_invoke(&e);
 *   tfa_engine_output(&e, 0, &out, &out_bytes);
 *
 * The model and the arena must stay valid (and the model unchanged) for the life of the engine. The
 * model must be 4-byte aligned (tensor shapes are read in place; a flash slot's model is 16-aligned):
 * init refuses a misaligned one with -TFA_ERR_MODEL_INVALID.
 * Supported builtin ops: the table in core/engine/ops.h (tfa_engine_supported_op() lists it), with int8
 * activations, int8 weights per-tensor or per-channel, int32 bias, fused NONE/RELU/RELU6/RELU_N1_TO_1;
 * QUANTIZE takes float32/int8 -> int8, DEQUANTIZE int8 -> float32. Anything else is refused at init with -TFA_ERR_UNSUPPORTED_OP
 * and the offending builtin code in bad_op_code (also when the op is known but a tensor type or an
 * option is not, e.g. int16 activations). All functions return 0 or -TFA_ERR_x (tfa/errors.h); calls
 * on an engine whose init failed return -TFA_ERR_BAD_STATE.
 *
 * Limits (refused as UNSUPPORTED_OP): subgraph 0 only; ADD/MUL/PAD/MEAN up to 4-D; at most 32768
 * multiply-accumulates per output value (keeps every int32 sum exact); no grouped convolution; no
 * sparse or variable tensors as weights; SOFTMAX/LOGISTIC outputs quantized as scale 1/256, zp -128.
 * Prepare/init uses float and double arithmetic (multipliers from scales, as TFLite does); invoke is
 * integer-only except QUANTIZE from float32 and DEQUANTIZE.
 */
#ifndef TFA_ENGINE_H
#define TFA_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "tfa/manifest.h"
#include "tfa/telemetry.h"

#define TFA_ENGINE_MAX_DIMS 6
#define TFA_ENGINE_ARENA_ALIGN 16u

/* Tensor element types, the TFLite schema's TensorType numbering. */
enum {
    TFA_TYPE_FLOAT32 = 0,
    TFA_TYPE_INT32 = 2,
    TFA_TYPE_UINT8 = 3,
    TFA_TYPE_INT64 = 4,
    TFA_TYPE_INT16 = 7,
    TFA_TYPE_INT8 = 9
};

struct tfa_eng_tensor; /* private, core/engine/engine_internal.h */
struct tfa_eng_op;
struct tfa_eng_tplan;

/* Caller-allocated engine state. Read-only for the caller; the fields below the comment line are
 * meaningful after tfa_engine_init (also after a failed one, for the error fields). */
typedef struct tfa_engine {
    const uint8_t *model;
    uint32_t model_len;
    uint8_t *arena;
    uint32_t arena_size;
    /* ---- */
    uint32_t arena_used;     /* bytes of the arena in use: metadata + planned activations */
    uint32_t arena_needed;   /* on -TFA_ERR_ARENA_EXHAUSTED: bytes needed if known, else 0 */
    uint32_t activation_bytes; /* the planned activation region alone */
    uint32_t op_count;       /* operators in the graph */
    uint64_t mac_count;      /* multiply-accumulates per inference (conv/fc/pool/elementwise work) */
    int32_t bad_op_code;     /* on -TFA_ERR_UNSUPPORTED_OP: builtin code of the refused op (-1: none) */
    int32_t bad_op_index;    /* on any init error: index of the operator at fault (-1: none) */
    uint32_t tensor_count;
    uint32_t input_count;
    uint32_t output_count;
    struct tfa_eng_tensor *tensors; /* in the arena */
    struct tfa_eng_op *ops;         /* in the arena */
    const uint8_t *inputs_vec;      /* subgraph input/output index vectors, in the model */
    const uint8_t *outputs_vec;
    uint8_t *activations;           /* base of the planned region, in the arena */
    uint8_t ready;                  /* 1 after a successful init; API calls otherwise give BAD_STATE */
    uint8_t use_optimized;          /* TFA_ENGINE_KERNELS_x: the kernel set ops run where one accepts them */
    struct tfa_eng_tplan *tplan;    /* during init only: planning records at the arena's tail; else NULL */
} tfa_engine_t;

/* Public description of an input or output tensor. */
typedef struct tfa_tensor_info {
    uint8_t type;            /* TFA_TYPE_x */
    uint8_t rank;
    int32_t dims[TFA_ENGINE_MAX_DIMS];
    uint32_t bytes;
    float scale;             /* per-tensor scale (0 if not quantized) */
    int32_t zero_point;
} tfa_tensor_info_t;

/* Parse, validate and prepare the model, plan the arena. On -TFA_ERR_ARENA_EXHAUSTED, e->arena_needed
 * tells the size to retry with when the metadata fitted (0 otherwise). */
int tfa_engine_init(tfa_engine_t *e, const uint8_t *model, uint32_t len, uint8_t *arena,
                    uint32_t arena_size);

/* Kernel sets of tfa_engine_init_kernels (its `optimized` argument). */
#define TFA_ENGINE_KERNELS_REFERENCE 0 /* the portable reference kernels: the oracle */
#define TFA_ENGINE_KERNELS_DSP 1       /* Cortex-M4 DSP kernels (core/engine/kernels_*_dsp.c) */
#define TFA_ENGINE_KERNELS_HOST 2      /* hosted builds: kernels_*_host.c, vectorised by the compiler */

/* tfa_engine_init with an explicit kernel choice: optimized TFA_ENGINE_KERNELS_REFERENCE (0) = the
 * reference kernels only, _DSP (1) = the DSP kernels for the ops they accept (emulated in portable C
 * on a hosted build), _HOST (2) = the host kernels for the ops they accept. tfa_engine_init takes
 * _DSP on a target with the DSP extension, _HOST on a hosted build (the simulator's library) and the
 * reference elsewhere; a set the build lacks means the reference kernels. All give the same bytes.
 * When the DSP kernels' scratch does not fit the arena, the reference kernels are taken (they need at
 * most the arena the host computed for the package's manifest: the host kernels take no scratch, so
 * that arena is the reference kernels'). */
int tfa_engine_init_kernels(tfa_engine_t *e, const uint8_t *model, uint32_t len, uint8_t *arena,
                            uint32_t arena_size, int optimized);

/* Arena bytes the model needs: a dry run of tfa_engine_init in the caller's work buffer (the future
 * arena itself will do). Result in *required. Returns the init error if the model is refused. */
int tfa_engine_arena_required(const uint8_t *model, uint32_t len, uint8_t *work, uint32_t work_size,
                              uint32_t *required);

int tfa_engine_input(tfa_engine_t *e, uint32_t idx, uint8_t **data, uint32_t *bytes);
int tfa_engine_output(const tfa_engine_t *e, uint32_t idx, const uint8_t **data, uint32_t *bytes);
int tfa_engine_input_info(const tfa_engine_t *e, uint32_t idx, tfa_tensor_info_t *info);
int tfa_engine_output_info(const tfa_engine_t *e, uint32_t idx, tfa_tensor_info_t *info);

/* Run one inference over the current input bytes. Cannot fail on a model that init accepted. A model
 * with state (SVDF) carries it from one invocation to the next; tfa_engine_reset clears it. */
int tfa_engine_invoke(tfa_engine_t *e);

/* Reset the model's state (variable tensors, e.g. SVDF's activation state kept across invocations) to
 * its initial value, as after init: int8 tensors to their zero point, others to 0. */
int tfa_engine_reset(tfa_engine_t *e);

/* Builtin code of operator i in execution order, -1 if out of range or not initialised. */
int32_t tfa_engine_op_code(const tfa_engine_t *e, uint32_t i);

/* Name of a supported builtin operator ("CONV_2D"); "UNKNOWN" for codes the engine does not run (the
 * host names those from the TFLite schema: tinyfleet.signing.tflite.builtin_op_name). */
const char *tfa_engine_op_name(int32_t builtin_code);

/* Builtin code of the i-th operator the engine runs (the rows of core/engine/ops.h, in order); -1 past
 * the last. For foreign callers that check their own list against the engine's. */
int32_t tfa_engine_supported_op(uint32_t i);

/* Self-test of docs/PROTOCOL.md 1.2: fill every input tensor, in subgraph order, from ONE continuing
 * xorshift32 byte stream from seed, invoke, SHA-256 of output tensor 0's bytes. */
void tfa_engine_selftest_input(uint32_t seed, uint8_t *data, uint32_t len);
int tfa_engine_selftest_digest(tfa_engine_t *e, uint32_t seed, uint8_t digest[32]);

/* Context for tfa_engine_selftest_hook: give it an engine struct and an arena. */
typedef struct tfa_engine_selftest_ctx {
    tfa_engine_t *engine;
    uint8_t *arena;
    uint32_t arena_size;
} tfa_engine_selftest_ctx_t;

/* Matches tfa_device_config_t.selftest_hook: ctx is a tfa_engine_selftest_ctx_t. Returns 0 when the
 * manifest has no self-test (seed 0) or the digest matches, -TFA_ERR_SELFTEST_FAILED on a mismatch,
 * or the engine's init error. */
int tfa_engine_selftest_hook(void *ctx, const tfa_manifest_t *manifest, const uint8_t *model,
                             uint32_t model_len);

/* sizeof(tfa_engine_t), for foreign-function callers that allocate it. */
uint32_t tfa_engine_struct_size(void);

#endif
