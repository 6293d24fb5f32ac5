/* Optimized (Cortex-M4 DSP) kernels on the host, under ASan + UBSan: the portable forms of the DSP
 * instructions against values worked out from the Arm ARM, the inlined requantization against
 * tfa_q_mul_by_quantized on random and extreme inputs, and whole models (the shared TFLM models when
 * present, the project's test models) run with the optimized kernels and with the reference kernels
 * on the same random inputs: every output byte and the self-test digests must be identical; and the
 * fallback to the reference kernels when the optimized kernels' scratch does not fit the arena. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/engine/engine_internal.h"
#include "../core/engine/quant.h"
#include "check.h"
#include "engine_pair.h"
#include "test_util.h"
#include "tfa/engine.h"

#define MODELS_DIR "../../../shared/models/"
#define ARENA_SIZE (1u << 20)

static void test_instructions(void)
{
    /* SXTB16: bytes 0 and 2 sign-extended; with ROR #8 bytes 1 and 3 */
    CHECK(tfa_dsp_sxtb16(0x80FF7F01u) == 0xFFFF0001u, "sxtb16 %08x", (unsigned)tfa_dsp_sxtb16(0x80FF7F01u));
    CHECK(tfa_dsp_sxtb16(0x00800081u) == 0xFF80FF81u, "sxtb16 neg");
    CHECK(tfa_dsp_sxtb16_ror8(0x80FF7F01u) == 0xFF80007Fu, "ror8 %08x",
          (unsigned)tfa_dsp_sxtb16_ror8(0x80FF7F01u));
    /* SMLAD: acc + lo*lo + hi*hi, wrapping modulo 2^32 like the instruction */
    CHECK(tfa_dsp_smlad(0x00030002u, 0xFFFF0005u, 100) == 100 + 10 - 3, "smlad");
    CHECK(tfa_dsp_smlad(0x80008000u, 0x80008000u, 0) == INT32_MIN, "smlad wraps: 2 * 2^30 = 2^31");
    CHECK(tfa_dsp_smlabb(0x7FFF8000u, 0x00018000u, 1) == 1 + 32768 * 32768, "smlabb");
    CHECK(tfa_dsp_smlatt(0x7FFF8000u, 0xFFFF8000u, 0) == -32767, "smlatt");
    /* SADD16: halfword-wise, wrapping */
    CHECK(tfa_dsp_sadd16(0x7FFF0001u, 0x00010002u) == 0x80000003u, "sadd16");
    CHECK(tfa_dsp_pkhbt(0x11112222u, 0x33334444u) == 0x44442222u, "pkhbt");
    CHECK(tfa_dsp_pkhtb(0x11112222u, 0x33334444u) == 0x11113333u, "pkhtb");
}

static void test_requantize(void)
{
    /* with the edges of tfa_dsp_requantize's fast path (|x| < 2^30) */
    static const int32_t extremes[] = {INT32_MIN,       INT32_MIN + 1, -(1 << 30), -(1 << 30) + 1, -1, 0, 1,
                                       (1 << 30) - 1, 1 << 30,       INT32_MAX};
    uint32_t seed = 0x1234567u;
    int bad = 0;
    for (int i = 0; i < 400000 && bad < 5; i++) {
        const uint32_t r = test_xorshift32(&seed);
        int32_t x = (int32_t)test_xorshift32(&seed);
        int32_t m = (int32_t)(test_xorshift32(&seed) | 0x40000000u) & INT32_MAX; /* [2^30, 2^31) */
        if ((r & 7u) == 0) {
            x = extremes[(r >> 3) % 10u];
        } else if ((r & 7u) == 1) {
            x >>= (r >> 3) % 31u; /* small accumulators, the common case */
        }
        if ((r & 0x300u) == 0) {
            m = extremes[(r >> 10) % 10u]; /* any int32 multiplier, INT32_MIN * INT32_MIN included */
        }
        const int shift = (int)((r >> 16) % 62u) - 31; /* -31..30 */
        const int32_t want = tfa_q_mul_by_quantized(x, m, shift);
        const int32_t got = tfa_dsp_requantize(x, m, shift);
        if (got != want) {
            bad++;
            CHECK(got == want, "requantize(%d, %d, %d) = %d, want %d", x, m, shift, got, want);
        }
    }
}

static void test_models(void)
{
    /* path, runs, ops the DSP kernels must take (when the model is present) */
    static const engine_pair_model_t models[] = {
        {"../../tests/vectors/model.tflite", 20, 0},
        {"vectors/engine/engine_ops.tflite", 20, 0},
        {"vectors/engine/dw_mult.tflite", 20, 3}, /* depthwise, input depth 3..30, multipliers 5, 2, 3 */
        {MODELS_DIR "hello_world_int8.tflite", 20, 3},
        {MODELS_DIR "micro_speech_quantized.tflite", 20, 2},
        {MODELS_DIR "person_detect.tflite", 3, 28},
    };
    engine_pair_models("test_engine_dsp", models, (int)(sizeof models / sizeof models[0]), TFA_ENGINE_KERNELS_DSP, 0);
}

/* An arena sized for the reference kernels (what the host puts in the manifest) must still run the
 * model when the optimized kernels' scratch does not fit in it: init falls back to the reference. */
static void test_arena_fallback(void)
{
    uint32_t len = 0;
    uint8_t *model = test_read_file(MODELS_DIR "micro_speech_quantized.tflite", &len);
    if (model == NULL) {
        printf("test_engine_dsp: micro_speech absent, arena fallback skipped\n");
        return;
    }
    static tfa_engine_t e;
    uint8_t *arena = malloc(ARENA_SIZE);
    CHECK(arena != NULL && ((uintptr_t)arena % TFA_ENGINE_ARENA_ALIGN) == 0, "aligned arena");
    CHECK_RC(tfa_engine_init_kernels(&e, model, len, arena, ARENA_SIZE, 0), 0, "reference");
    const uint32_t reference = e.arena_used;
    CHECK_RC(tfa_engine_init_kernels(&e, model, len, arena, ARENA_SIZE, 1), 0, "optimized");
    const uint32_t optimized = e.arena_used;
    CHECK(optimized > reference, "micro_speech's depthwise column takes arena: %u vs %u", optimized,
          reference);
    CHECK_RC(tfa_engine_init_kernels(&e, model, len, arena, reference, 1), 0, "optimized, tight arena");
    uint32_t taken = 0;
    for (uint32_t i = 0; e.ready && i < e.op_count; i++) {
        taken += e.ops[i].optimized;
    }
    CHECK(e.ready && e.arena_used == reference && taken == 0, "fell back to the reference kernels");
    CHECK_RC(tfa_engine_init_kernels(&e, model, len, arena, reference - 16u, 1), -TFA_ERR_ARENA_EXHAUSTED,
             "below the reference need");
    CHECK(e.arena_needed == reference, "need %u, want %u", e.arena_needed, reference);
    CHECK_RC(tfa_engine_init_kernels(&e, model, len, arena, optimized, 1), 0, "optimized, its own need");
    taken = 0;
    for (uint32_t i = 0; e.ready && i < e.op_count; i++) {
        taken += e.ops[i].optimized;
    }
    CHECK(taken == 2, "depthwise and FC optimized: %u", taken);
    free(arena);
    free(model);
}

int main(void)
{
    test_instructions();
    test_requantize();
    test_models();
    test_arena_fallback();
    return test_report("test_engine_dsp");
}
