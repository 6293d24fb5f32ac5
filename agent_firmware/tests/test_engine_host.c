/* Host kernels (core/engine/kernels_*_host.c, TFA_ENGINE_KERNELS_HOST) under ASan + UBSan: whole models
 * (the shared TFLM models when present, the project's test models) run with the host kernels and with
 * the reference kernels on the same inputs (all -128, all 127, then random): every output byte and the
 * self-test digests identical, the arena exactly the reference's (the host kernels use none), and
 * tfa_engine_init choosing the host kernels on a hosted build; their requantization (kernels_host.h)
 * against tfa_q_mul_by_quantized on extreme and random inputs. The random generated models of
 * tests/device (every op family, zero points across int8) compare them with TFLM. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/engine/engine_internal.h"
#include "../core/engine/kernels_host.h"
#include "../core/engine/quant.h"
#include "check.h"
#include "engine_pair.h"
#include "test_util.h"
#include "tfa/engine.h"

#define MODELS_DIR "../../../shared/models/"
#define ARENA_SIZE (1u << 20)

static tfa_engine_t host;

static void test_models(void)
{
    /* path, runs, ops the host kernels must take (when the model is present) */
    static const engine_pair_model_t models[] = {
        {"../../tests/vectors/model.tflite", 20, 0},
        {"vectors/engine/engine_ops.tflite", 20, 0},
        {MODELS_DIR "hello_world_int8.tflite", 20, 3},
        {MODELS_DIR "micro_speech_quantized.tflite", 20, 2},
        {MODELS_DIR "person_detect.tflite", 3, 28},
    };
    engine_pair_models("test_engine_host", models, (int)(sizeof models / sizeof models[0]), TFA_ENGINE_KERNELS_HOST,
                       1);
}

/* tfa_engine_init on a hosted build runs the host kernels (what the simulator's devices run). */
static void test_default(void)
{
    uint32_t len = 0;
    uint8_t *model = test_read_file("vectors/engine/engine_ops.tflite", &len);
    CHECK(model != NULL, "engine_ops.tflite");
    uint8_t *arena = malloc(ARENA_SIZE);
    if (model != NULL && arena != NULL) {
        CHECK_RC(tfa_engine_init(&host, model, len, arena, ARENA_SIZE), 0, "init");
        CHECK(host.use_optimized == TFA_ENGINE_KERNELS_HOST, "default kernel set %u", host.use_optimized);
    }
    free(arena);
    free(model);
}

static void prv_check_rq(int32_t x, int32_t mult, int shift)
{
    const tfa_host_rq_t q = tfa_host_rq_make(mult, shift);
    const int32_t got = tfa_host_rq(&q, x), want = tfa_q_mul_by_quantized(x, mult, shift);
    CHECK(got == want, "rq(%d, %d, %d) = %d, want %d", x, mult, shift, got, want);
}

/* Every shift the kernels see (-31..30) with extreme and random sums and multipliers, ties included:
 * x = (2k + 1) * 2^(r-1) / mult lands on a rounding tie of the right shift for some inputs. */
static void test_requantize(void)
{
    static const int32_t xs[] = {0, 1, -1, 2, -2, 3, -3, 127, -128, 65535, -65536, 1 << 30, -(1 << 30),
                                 INT32_MAX, INT32_MIN, INT32_MIN + 1, 0x12345678, -0x12345678};
    static const int32_t ms[] = {INT32_MIN, INT32_MAX, 1 << 30, (1 << 30) + 1, 1518500250, 1, 0, -1};
    for (int shift = -31; shift <= 30; shift++) {
        for (size_t i = 0; i < sizeof xs / sizeof xs[0]; i++) {
            for (size_t j = 0; j < sizeof ms / sizeof ms[0]; j++) {
                prv_check_rq(xs[i], ms[j], shift);
            }
        }
    }
    uint32_t seed = 0x5EED15u;
    for (int n = 0; n < 200000; n++) {
        const int32_t x = (int32_t)test_xorshift32(&seed) >> (test_xorshift32(&seed) % 32u);
        const int32_t m = (int32_t)((1u << 30) | (test_xorshift32(&seed) & 0x3FFFFFFFu));
        const int shift = (int)(test_xorshift32(&seed) % 62u) - 31;
        prv_check_rq(x, m, shift);
        prv_check_rq(-x, m, shift);
    }
    /* ties of the right shift: high = odd multiple of 2^(r-1), both signs */
    for (int r = 1; r <= 31; r++) {
        for (int32_t k = -5; k <= 5; k++) {
            const int64_t high = (2 * (int64_t)k + 1) * ((int64_t)1 << (r - 1));
            if (high >= INT32_MIN && high <= INT32_MAX) {
                /* mult = 2^30 halves: x = 2 * high gives high exactly after the doubling high multiply */
                const int64_t x = 2 * high;
                if (x >= INT32_MIN && x <= INT32_MAX) {
                    prv_check_rq((int32_t)x, 1 << 30, -r);
                }
            }
        }
    }
}

int main(void)
{
    test_requantize();
    test_models();
    test_default();
    return test_report("test_engine_host");
}
