/* Inference engine: fixed-point primitives against hand-checked values, the shared TFLM models against
 * self-test digests computed with the TFLM Python interpreter, refusal of an unsupported model by name,
 * arena exhaustion at every size below the need, malformed models (every truncation, random byte
 * mutations) which must be refused or run without any out-of-bounds access (ASan + UBSan), and crafted
 * models (one field of a valid model rewritten) that once reached undefined behaviour (test_crafted). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/engine/fb.h"
#include "../core/engine/quant.h"
#include "check.h"
#include "test_util.h"
#include "tfa/engine.h"
#include "tfa/errors.h"

#define MODELS_DIR "../../../shared/models/"

/* Self-test digests (seed 1 and 0x12345678) from tinyfleet.signing.selftest.expected_output_sha256 (TFLM). */
static const struct {
    const char *file;
    const char *seed1;
    const char *seed12345678;
} k_golden[] = {
    {"hello_world_int8.tflite", "27952171c7fcdf0ddc765ab4f4e1c537cb29e5e533d57b3456257ee785c81711",
     "3e23e8160039594a33894f6564e1b1348bbd7a0088d42c4acb73eeaed59c009d"},
    {"micro_speech_quantized.tflite", "a0acb45adfecc501f201692fc370d7fa8c12b990093b6e6b15c91eb2c9efcb55",
     "ccb665b13d66025af336042786dcbb616cc6b0d77c5dbd9937ff2860d2caa55e"},
    {"person_detect.tflite", "d4d1e8882a19c7d856d2bf4c64d6f1ba651451b3707e8d624f7766c7893b308d",
     "d204cb6ac721765c66eef8a08e4b140949b4cab5e3f37ec2bb53ea21187674b6"},
};

/* A model of the shared models directory (malloc'ed), or NULL when it is absent. */
static uint8_t *prv_read(const char *name, uint32_t *len)
{
    char path[256];
    snprintf(path, sizeof path, "%s%s", MODELS_DIR, name);
    return test_read_file(path, len);
}

static void prv_hex(const uint8_t d[32], char out[65])
{
    for (int i = 0; i < 32; i++) {
        snprintf(out + 2 * i, 3, "%02x", d[i]);
    }
}

static void test_fixed_point(void)
{
    CHECK(tfa_q_high_mul(INT32_MIN, INT32_MIN) == INT32_MAX, "saturation");
    CHECK(tfa_q_high_mul(1 << 30, 1 << 30) == 1 << 29, "half*half");
    CHECK(tfa_q_high_mul(-(1 << 30), 3) == -1, "rounds away: %d", tfa_q_high_mul(-(1 << 30), 3));
    CHECK(tfa_q_round_shift(5, 1) == 3 && tfa_q_round_shift(-5, 1) == -3, "ties away from zero");
    CHECK(tfa_q_round_shift(-4, 1) == -2 && tfa_q_round_shift(7, 0) == 7, "exact");
    CHECK(tfa_q_mul_pot(1 << 29, 2) == INT32_MAX && tfa_q_mul_pot(-(1 << 29), 3) == INT32_MIN, "sat");
    int32_t m;
    int s;
    tfa_q_quantize_multiplier(0.5, &m, &s);
    CHECK(m == 1 << 30 && s == 0, "0.5 -> %d %d", m, s);
    tfa_q_quantize_multiplier(0.75, &m, &s);
    CHECK(m == 1610612736 && s == 0, "0.75 -> %d %d", m, s);
    tfa_q_quantize_multiplier(3.0, &m, &s);
    CHECK(m == 1610612736 && s == 2, "3.0 -> %d %d", m, s);
    tfa_q_quantize_multiplier(0.0, &m, &s);
    CHECK(m == 0 && s == 0, "zero");
    /* the mantissa rounds up to 2^31: halved, exponent bumped (TFLite's q == 1 << 31 case) */
    tfa_q_quantize_multiplier(1.0 - 1.0 / 1099511627776.0, &m, &s);
    CHECK(m == 1 << 30 && s == 1, "1 - 2^-40 -> %d %d", m, s);
    /* positive shift multiplies before the rounding high-mul: 3 * 2^2 * 0.75 */
    CHECK(tfa_q_mul_by_quantized(3, 1610612736, 2) == 9, "3*3 = %d", tfa_q_mul_by_quantized(3, 1610612736, 2));
    tfa_q_quantize_multiplier(1e-12, &m, &s);
    CHECK(m == 0 && s == 0, "tiny flushes to zero");
    CHECK(tfa_q_mul_by_quantized(100, 1 << 30, -1) == 25, "100*0.5/2");
    double q = tfa_q_frexp(48.0, &s);
    CHECK(q == 0.75 && s == 6, "frexp 48 = %f 2^%d", q, s);
    q = tfa_q_frexp(4.9406564584124654e-324, &s);
    CHECK(q == 0.5 && s == -1073, "frexp subnormal %g %d", q, s);
    CHECK(tfa_q_round(2.5) == 3 && tfa_q_round(-2.5) == -3 && tfa_q_round(0.49999999999999994) == 0,
          "round");
    CHECK(tfa_q_exp_on_negative_values(0, 5) == INT32_MAX, "exp(0)");
    /* exp(-1) in Q0.31 ~ 790015085, input -1.0 in Q5.26 (polynomial: ~1e-7 error) */
    int32_t e1 = tfa_q_exp_on_negative_values(-(1 << 26), 5);
    CHECK(e1 > 790015084 - 1000 && e1 < 790015084 + 1000, "exp(-1) = %d", e1);
    CHECK(tfa_q_logistic(0, 4) == 1 << 30, "logistic(0)");
    int32_t l = tfa_q_logistic(1 << 27, 4); /* logistic(1) = 0.7310585786 (Newton steps: ~1e-5) */
    CHECK(l > 1569923487 - 20000 && l < 1569923487 + 20000, "logistic(1) = %d", l);
}

/* crafted-model helpers, defined with the crafted models below */
static uint32_t prv_field_at(const uint8_t *m, uint32_t table, uint32_t field);
static uint32_t prv_subgraph_item(const uint8_t *m, uint32_t len, uint32_t field, uint32_t i);
static void prv_put32(uint8_t *p, uint32_t v);

static void test_unsupported(void)
{
    uint32_t len;
    uint8_t *model = prv_read("keyword_scrambled_8bit.tflite", &len);
    if (model == NULL) {
        printf("test_engine: shared models absent, skipping model tests\n");
        return;
    }
    static uint8_t arena[1 << 16];
    tfa_engine_t e;
    /* the keyword model runs whole: int16 -> int8 QUANTIZE, 7 SVDF, int8 -> int16 SOFTMAX, int16 -> int32
     * QUANTIZE */
    int rc = tfa_engine_init(&e, model, len, arena, sizeof arena);
    CHECK(rc == 0 && tfa_engine_invoke(&e) == 0, "keyword model rc %d", rc);
    /* its first operator's code turned into UNIDIRECTIONAL_SEQUENCE_LSTM (44), which the engine lacks */
    tfa_fb_t fb = {model, len};
    uint32_t root = 0, oc = 0;
    tfa_fb_vec_t codes;
    int32_t idx = 0;
    rc = tfa_fb_i32(&fb, prv_subgraph_item(model, len, 3, 0), 0, 0, &idx); /* Operator.opcode_index */
    rc = rc ? rc : tfa_fb_root(&fb, &root);
    rc = rc ? rc : tfa_fb_vector(&fb, root, 1, 4, &codes); /* Model.operator_codes */
    rc = rc ? rc : tfa_fb_vec_table(&fb, &codes, (uint32_t)idx, &oc);
    CHECK(rc == 0, "operator code of the keyword model's operator #0: rc %d", rc);
    if (rc != 0) {
        free(model);
        return;
    }
    model[prv_field_at(model, oc, 0)] = 44;          /* deprecated_builtin_code */
    prv_put32(model + prv_field_at(model, oc, 3), 44); /* builtin_code */
    rc = tfa_engine_init(&e, model, len, arena, sizeof arena);
    CHECK(rc == -TFA_ERR_UNSUPPORTED_OP, "rc %d", rc);
    CHECK(e.bad_op_code == 44 && e.bad_op_index == 0 && strcmp(tfa_engine_op_name(27), "SVDF") == 0,
          "op %d", (int)e.bad_op_code);
    CHECK(tfa_engine_invoke(&e) == -TFA_ERR_BAD_STATE, "invoke after failed init");
    CHECK(strcmp(tfa_engine_op_name(114), "QUANTIZE") == 0 && strcmp(tfa_engine_op_name(-3), "UNKNOWN") == 0,
          "names");
    /* the supported list is the table: codes ascending, each named, then -1 */
    uint32_t n = 0;
    while (tfa_engine_supported_op(n) >= 0) {
        int32_t code = tfa_engine_supported_op(n);
        CHECK(strcmp(tfa_engine_op_name(code), "UNKNOWN") != 0, "op %d unnamed", (int)code);
        CHECK(n == 0 || code > tfa_engine_supported_op(n - 1u), "op table out of order at %u", (unsigned)n);
        n++;
    }
    CHECK(n > 0u && tfa_engine_supported_op(UINT32_MAX) == -1, "%u supported ops", (unsigned)n);
    free(model);
}

static void test_golden(void)
{
    for (size_t i = 0; i < sizeof k_golden / sizeof k_golden[0]; i++) {
        uint32_t len;
        uint8_t *model = prv_read(k_golden[i].file, &len);
        if (model == NULL) {
            return;
        }
        uint32_t need = 0;
        uint8_t *work = malloc(1u << 20);
        int rc = tfa_engine_arena_required(model, len, work, 1u << 20, &need);
        free(work);
        CHECK(rc == 0 && need > 0, "%s: arena_required rc %d", k_golden[i].file, rc);
        /* exactly the need, in a heap block so that ASan sees any overrun */
        uint8_t *arena = malloc(need);
        tfa_engine_t e;
        rc = tfa_engine_init(&e, model, len, arena, need);
        CHECK(rc == 0, "%s: init rc %d with arena %u", k_golden[i].file, rc, (unsigned)need);
        if (rc == 0) {
            uint8_t digest[32];
            char hex[65];
            CHECK(e.op_count > 0 && e.mac_count > 0, "counts");
            rc = tfa_engine_selftest_digest(&e, 1, digest);
            prv_hex(digest, hex);
            CHECK(rc == 0 && strcmp(hex, k_golden[i].seed1) == 0, "%s seed 1: %s", k_golden[i].file, hex);
            rc = tfa_engine_selftest_digest(&e, 0x12345678u, digest);
            prv_hex(digest, hex);
            CHECK(rc == 0 && strcmp(hex, k_golden[i].seed12345678) == 0, "%s: %s", k_golden[i].file, hex);

            /* the runtime's hook: match, mismatch, no self-test */
            tfa_manifest_t man;
            memset(&man, 0, sizeof man);
            man.selftest_seed = 1;
            for (int b = 0; b < 32; b++) {
                unsigned v;
                sscanf(k_golden[i].seed1 + 2 * b, "%2x", &v);
                man.selftest_output_sha256[b] = (uint8_t)v;
            }
            tfa_engine_t e2;
            tfa_engine_selftest_ctx_t ctx = {&e2, arena, need};
            CHECK(tfa_engine_selftest_hook(&ctx, &man, model, len) == 0, "hook match");
            man.selftest_output_sha256[5] ^= 1;
            CHECK(tfa_engine_selftest_hook(&ctx, &man, model, len) == -TFA_ERR_SELFTEST_FAILED, "mismatch");
            man.selftest_seed = 0;
            CHECK(tfa_engine_selftest_hook(&ctx, &man, model, len) == 0, "no self-test");
        }
        /* every arena size below the need fails cleanly (step keeps the test fast) */
        uint32_t step = need / 97u + 1u;
        for (uint32_t size = 0; size < need; size += step) {
            uint8_t *small = malloc(size ? size : 1);
            tfa_engine_t es;
            rc = tfa_engine_init(&es, model, len, small, size);
            CHECK(rc == -TFA_ERR_ARENA_EXHAUSTED, "%s: size %u rc %d", k_golden[i].file, (unsigned)size, rc);
            CHECK(es.arena_needed == 0 || es.arena_needed == need, "needed %u vs %u",
                  (unsigned)es.arena_needed, (unsigned)need);
            free(small);
        }
        free(arena);
        free(model);
    }
}

static uint32_t g_rng = 0x9E3779B9u;
static uint32_t prv_rand(void)
{
    return test_xorshift32(&g_rng);
}

/* Init on a malformed copy: must be refused with a model error, or run. */
static void prv_try(const uint8_t *model, uint32_t len, uint8_t *arena, uint32_t arena_size, int invoke)
{
    uint8_t *copy = malloc(len ? len : 1);
    memcpy(copy, model, len);
    tfa_engine_t e;
    int rc = tfa_engine_init(&e, copy, len, arena, arena_size);
    CHECK(rc == 0 || rc == -TFA_ERR_MODEL_INVALID || rc == -TFA_ERR_UNSUPPORTED_OP ||
              rc == -TFA_ERR_ARENA_EXHAUSTED,
          "rc %d", rc);
    if (rc == 0 && invoke) {
        CHECK(tfa_engine_invoke(&e) == 0, "invoke");
    }
    free(copy);
}

/* Mutation rounds; TFA_FUZZ_SCALE=N multiplies them for a longer local run. */
static int prv_rounds(int base)
{
    const char *scale = getenv("TFA_FUZZ_SCALE");
    int k = scale ? atoi(scale) : 1;
    return base * (k > 0 ? k : 1);
}

static void test_malformed(void)
{
    static const char *names[] = {"hello_world_int8.tflite", "micro_speech_quantized.tflite"};
    uint32_t arena_size = 1u << 16;
    uint8_t *arena = malloc(arena_size);
    for (size_t n = 0; n < 2; n++) {
        uint32_t len;
        uint8_t *model = prv_read(names[n], &len);
        if (model == NULL) {
            break;
        }
        uint32_t step = len > 4000 ? 7u : 1u;
        for (uint32_t cut = 0; cut < len; cut += step) {
            uint8_t *copy = malloc(cut ? cut : 1);
            memcpy(copy, model, cut);
            tfa_engine_t e;
            int rc = tfa_engine_init(&e, copy, cut, arena, arena_size);
            CHECK(rc != 0, "%s truncated to %u accepted", names[n], (unsigned)cut);
            free(copy);
        }
        uint8_t *mut = malloc(len);
        for (int iter = 0; iter < prv_rounds(1500); iter++) {
            memcpy(mut, model, len);
            int flips = 1 + (int)(prv_rand() % 4u);
            for (int f = 0; f < flips; f++) {
                /* mostly the metadata (tables live after the weights in these files) */
                uint32_t pos = (iter & 1) ? prv_rand() % len : len - 1u - prv_rand() % (len < 1500 ? len : 1500u);
                mut[pos] = (uint8_t)prv_rand();
            }
            prv_try(mut, len, arena, arena_size, 1);
        }
        free(mut);
        free(model);
    }
    /* person_detect: mutate its metadata (the tables after the 300 KB of weights) */
    uint32_t len;
    uint8_t *model = prv_read("person_detect.tflite", &len);
    if (model != NULL) {
        uint8_t *big = malloc(1u << 17);
        uint8_t *mut = malloc(len);
        for (int iter = 0; iter < prv_rounds(150); iter++) {
            memcpy(mut, model, len);
            for (int f = 0; f < 3; f++) {
                mut[len - 1u - prv_rand() % 12000u] = (uint8_t)prv_rand();
            }
            prv_try(mut, len, big, 1u << 17, 1);
        }
        free(mut);
        free(big);
        free(model);
    }
    free(arena);
    tfa_engine_t e;
    uint8_t tiny[8] = {0};
    CHECK(tfa_engine_init(&e, NULL, 0, tiny, 8) == -TFA_ERR_MODEL_INVALID, "null model");
    CHECK(tfa_engine_init(&e, tiny, 8, tiny, 8) == -TFA_ERR_MODEL_INVALID, "zeros");
}


/* ---- Crafted models: a valid model (vectors/engine/engine_ops.tflite, made by its generator script)
 * with one field rewritten in place. Each reproduced a sanitizer report or a wrong acceptance before
 * the prepare step validated it. Ops of that model: 0 DEPTHWISE_CONV_2D (4 channels, multiplier 1),
 * 1 AVERAGE_POOL_2D, 2 MAX_POOL_2D, 3 CONV_2D (stride 2, SAME, RELU6, output tensor 12), 4 CONV_2D,
 * 5 ADD (output tensor 14), 6 MEAN, 7 FULLY_CONNECTED, 8 LOGISTIC. */
#define ENGINE_OPS "vectors/engine/engine_ops.tflite"

/* Absolute offset of a present scalar field of a table (the test fails when it is absent). */
static uint32_t prv_field_at(const uint8_t *m, uint32_t table, uint32_t field)
{
    uint32_t vt = table - (uint32_t)tfa_fb_rd_i32(m + table);
    uint32_t slot = 4u + 2u * field;
    uint32_t off = slot + 2u <= tfa_fb_rd_u16(m + vt) ? tfa_fb_rd_u16(m + vt + slot) : 0u;
    CHECK(off != 0, "field %u absent", (unsigned)field);
    return off ? table + off : 0u;
}

static uint32_t prv_subgraph_item(const uint8_t *m, uint32_t len, uint32_t field, uint32_t i)
{
    tfa_fb_t fb = {m, len};
    uint32_t root = 0, sg = 0, item = 0;
    tfa_fb_vec_t v;
    int rc = tfa_fb_root(&fb, &root);
    rc = rc ? rc : tfa_fb_vector(&fb, root, 2, 4, &v); /* Model.subgraphs */
    rc = rc ? rc : tfa_fb_vec_table(&fb, &v, 0, &sg);
    rc = rc ? rc : tfa_fb_vector(&fb, sg, field, 4, &v); /* SubGraph.tensors (0) / operators (3) */
    rc = rc ? rc : tfa_fb_vec_table(&fb, &v, i, &item);
    CHECK(rc == 0, "walk rc %d", rc);
    return item;
}

static void prv_put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

/* Operator op's builtin options, field: overwrite the int32 stored there. */
static void prv_set_option(uint8_t *m, uint32_t len, uint32_t op, uint32_t field, uint32_t v)
{
    tfa_fb_t fb = {m, len};
    uint32_t options = 0;
    CHECK(tfa_fb_table(&fb, prv_subgraph_item(m, len, 3, op), 4, &options) == 0 && options, "options");
    uint32_t at = prv_field_at(m, options, field);
    if (at) {
        prv_put32(m + at, v);
    }
}

/* Tensor t's scale number `which` (float bits) and, if set_zp, its first zero point. */
static void prv_set_quant_at(uint8_t *m, uint32_t len, uint32_t t, uint32_t which, uint32_t scale_bits,
                             int set_zp, int64_t zp)
{
    tfa_fb_t fb = {m, len};
    uint32_t quant = 0;
    tfa_fb_vec_t scales, zps;
    int rc = tfa_fb_table(&fb, prv_subgraph_item(m, len, 0, t), 4, &quant);
    rc = rc ? rc : tfa_fb_vector(&fb, quant, 2, 4, &scales);
    rc = rc ? rc : tfa_fb_vector(&fb, quant, 3, 8, &zps);
    CHECK(rc == 0 && scales.count > which && zps.count > 0, "quant of tensor %u", (unsigned)t);
    if (rc == 0 && scales.count > which && zps.count > 0) {
        prv_put32(m + scales.start + 4u * which, scale_bits);
        if (set_zp) {
            prv_put32(m + zps.start, (uint32_t)(uint64_t)zp);
            prv_put32(m + zps.start + 4, (uint32_t)((uint64_t)zp >> 32));
        }
    }
}

static void prv_set_quant(uint8_t *m, uint32_t len, uint32_t t, uint32_t scale_bits, int set_zp, int64_t zp)
{
    prv_set_quant_at(m, len, t, 0, scale_bits, set_zp, zp);
}

/* Init the crafted model: must be refused with want; if it is accepted, invoke it anyway so that the
 * sanitizers see what the kernels do with it. */
static void prv_expect_refused(const char *what, const uint8_t *m, uint32_t len, int want)
{
    uint32_t arena_size = 1u << 16;
    uint8_t *arena = malloc(arena_size);
    tfa_engine_t e;
    int rc = tfa_engine_init(&e, m, len, arena, arena_size);
    CHECK(rc == want, "%s: rc %d, want %d", what, rc, want);
    if (rc == 0) {
        tfa_engine_invoke(&e);
    }
    free(arena);
}

/* TFA_CRAFTED=n runs only crafted case n (to see one sanitizer report at a time on an old engine). */
static int prv_case(int n)
{
    const char *only = getenv("TFA_CRAFTED");
    return only == NULL || atoi(only) == n;
}

static void test_crafted(void)
{
    uint32_t len;
    uint8_t *orig = test_read_file(ENGINE_OPS, &len);
    CHECK(orig != NULL, "%s missing", ENGINE_OPS);
    if (orig == NULL) {
        return;
    }
    uint8_t *m = malloc(len);
    uint32_t arena_size = 1u << 16;
    uint8_t *arena = malloc(arena_size);

    /* the valid model runs and matches TFLM (tflite_micro, input all 1s: output 2, -1, 1) */
    tfa_engine_t e;
    int rc = tfa_engine_init(&e, orig, len, arena, arena_size);
    CHECK(rc == 0 && e.op_count == 9, "engine_ops rc %d", rc);
    if (rc == 0) {
        uint8_t *in;
        const uint8_t *out;
        uint32_t bytes;
        CHECK(tfa_engine_input(&e, 0, &in, &bytes) == 0 && bytes == 256, "input");
        memset(in, 1, bytes);
        CHECK(tfa_engine_invoke(&e) == 0, "invoke");
        CHECK(tfa_engine_output(&e, 0, &out, &bytes) == 0 && bytes == 3, "output");
        CHECK((int8_t)out[0] == 2 && (int8_t)out[1] == -1 && (int8_t)out[2] == 1, "output %d %d %d",
              (int8_t)out[0], (int8_t)out[1], (int8_t)out[2]);
    }

    if (prv_case(1)) {
        /* 1. DEPTHWISE_CONV_2D depth_multiplier (DepthwiseConv2DOptions field 3) 0x40000001: 4 * m wrapped
         * to 4 == output channels (signed overflow, then out-of-bounds filter/output access at invoke) */
        memcpy(m, orig, len);
        prv_set_option(m, len, 0, 3, 0x40000001u);
        prv_expect_refused("depthwise multiplier overflow", m, len, -TFA_ERR_MODEL_INVALID);
        memcpy(m, orig, len);
        prv_set_option(m, len, 0, 3, 3u); /* plain mismatch: 4 * 3 != 4 */
        prv_expect_refused("depthwise multiplier mismatch", m, len, -TFA_ERR_MODEL_INVALID);
    }

    if (prv_case(2)) {
        /* 2. ADD with an output scale 2^-30 (far below its inputs'): the output multiplier exceeds one, a
         * positive shift, so the kernel's rounding right shift got a negative count */
        memcpy(m, orig, len);
        prv_set_quant(m, len, 14, 0x30800000u, 0, 0); /* 2^-30 */
        prv_expect_refused("ADD output multiplier >= 1", m, len, -TFA_ERR_MODEL_INVALID);
    }

    if (prv_case(3)) {
        /* 3. CONV_2D stride_h (Conv2DOptions field 2) INT32_MAX: (in + stride - 1) overflowed int32 */
        memcpy(m, orig, len);
        prv_set_option(m, len, 3, 2, 0x7FFFFFFFu);
        prv_expect_refused("conv stride overflow", m, len, -TFA_ERR_MODEL_INVALID);
        memcpy(m, orig, len);
        prv_set_option(m, len, 1, 2, 0x7FFFFFFFu); /* AVERAGE_POOL_2D stride_h (VALID): the same */
        prv_expect_refused("pool stride overflow", m, len, -TFA_ERR_MODEL_INVALID);
    }

    if (prv_case(4)) {
        /* 4. requantization: CONV_2D (RELU6) output with the smallest subnormal scale and zero point 5:
         * 6 / scale is infinite, rounds to INT64_MAX, + 5 overflowed int64 in the activation range */
        memcpy(m, orig, len);
        prv_set_quant(m, len, 12, 0x00000001u, 1, 5);
        prv_expect_refused("activation range overflow", m, len, -TFA_ERR_MODEL_INVALID);
    }

    if (prv_case(5)) {
        /* 5. per-channel filter scales: only the first is checked at parse; a NaN, negative or infinite
         * later one (CONV_2D filter, tensor 4, channel 1) gave a garbage multiplier and was accepted */
        static const uint32_t bad[] = {0x7FC00000u, 0xBF800000u, 0x7F800000u}; /* NaN, -1, +inf */
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            memcpy(m, orig, len);
            prv_set_quant_at(m, len, 4, 1, bad[i], 0, 0);
            prv_expect_refused("per-channel scale", m, len, -TFA_ERR_MODEL_INVALID);
        }
    }

    free(arena);
    free(m);
    free(orig);
}

int main(void)
{
    test_fixed_point();
    test_unsupported();
    test_golden();
    test_malformed();
    test_crafted();
    return test_report("test_engine");
}
