/* Inference engine: fixed-point primitives against hand-checked values, the shared TFLM models against
 * self-test digests computed with the TFLM Python interpreter, refusal of an unsupported model by name,
 * arena exhaustion at every size below the need, and malformed models (every truncation, random byte
 * mutations) which must be refused or run without any out-of-bounds access (ASan + UBSan). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    int rc = tfa_engine_init(&e, model, len, arena, sizeof arena);
    CHECK(rc == -TFA_ERR_UNSUPPORTED_OP, "rc %d", rc);
    CHECK(e.bad_op_code == 27 && strcmp(tfa_engine_op_name(e.bad_op_code), "SVDF") == 0, "op %d",
          (int)e.bad_op_code);
    CHECK(tfa_engine_invoke(&e) == -TFA_ERR_BAD_STATE, "invoke after failed init");
    CHECK(strcmp(tfa_engine_op_name(114), "QUANTIZE") == 0 && strcmp(tfa_engine_op_name(-3), "UNKNOWN") == 0,
          "names");
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

int main(void)
{
    test_fixed_point();
    test_unsupported();
    test_golden();
    test_malformed();
    return test_report("test_engine");
}
