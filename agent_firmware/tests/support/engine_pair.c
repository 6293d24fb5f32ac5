#include "engine_pair.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/engine/engine_internal.h"
#include "check.h"
#include "test_util.h"
#include "tfa/engine.h"

#define ARENA_SIZE (1u << 20)

/* Static: tfa_engine_t is large, and one pair runs at a time. */
static tfa_engine_t ref, other;

static void prv_set_inputs(int run, uint32_t *seed)
{
    for (uint32_t i = 0; i < ref.input_count; i++) {
        uint8_t *a, *b;
        uint32_t na, nb;
        CHECK_RC(tfa_engine_input(&ref, i, &a, &na), 0, "input");
        CHECK_RC(tfa_engine_input(&other, i, &b, &nb), 0, "input");
        for (uint32_t k = 0; k < na && k < nb; k++) {
            a[k] = run == 0 ? 0x80u : run == 1 ? 0x7Fu : (uint8_t)test_xorshift32(seed);
            b[k] = a[k];
        }
    }
}

static void prv_compare_runs(const char *name, int runs)
{
    uint32_t seed = 0xC0FFEEu;
    for (int run = 0; run < runs; run++) {
        prv_set_inputs(run, &seed);
        CHECK_RC(tfa_engine_invoke(&ref), 0, name);
        CHECK_RC(tfa_engine_invoke(&other), 0, name);
        for (uint32_t o = 0; o < ref.output_count; o++) {
            const uint8_t *a, *b;
            uint32_t na, nb;
            CHECK_RC(tfa_engine_output(&ref, o, &a, &na), 0, "output");
            CHECK_RC(tfa_engine_output(&other, o, &b, &nb), 0, "output");
            CHECK(na == nb && memcmp(a, b, na) == 0, "%s: run %d output %u differs", name, run, o);
        }
    }
    uint8_t d_ref[32], d_other[32];
    CHECK_RC(tfa_engine_selftest_digest(&ref, 0x12345678u, d_ref), 0, "digest");
    CHECK_RC(tfa_engine_selftest_digest(&other, 0x12345678u, d_other), 0, "digest");
    CHECK(memcmp(d_ref, d_other, 32) == 0, "%s: self-test digests differ", name);
}

uint32_t engine_pair_compare(const char *name, const uint8_t *model, uint32_t len, int runs, uint8_t kernels,
                             int same_arena)
{
    uint8_t *arena_ref = malloc(ARENA_SIZE);
    uint8_t *arena_other = malloc(ARENA_SIZE);
    uint32_t taken = 0;
    CHECK(arena_ref && arena_other, "out of memory");
    if (arena_ref && arena_other) {
        CHECK_RC(tfa_engine_init_kernels(&ref, model, len, arena_ref, ARENA_SIZE, TFA_ENGINE_KERNELS_REFERENCE),
                 0, name);
        CHECK_RC(tfa_engine_init_kernels(&other, model, len, arena_other, ARENA_SIZE, kernels), 0, name);
    }
    if (arena_ref && arena_other && ref.ready && other.ready) {
        if (same_arena)
            CHECK(ref.arena_used == other.arena_used, "%s: arena %u with kernel set %u, %u reference", name,
                  other.arena_used, kernels, ref.arena_used);
        for (uint32_t i = 0; i < other.op_count; i++) {
            CHECK(ref.ops[i].optimized == 0, "%s: op %u optimized in the reference engine", name, i);
            CHECK(other.ops[i].optimized == 0 || other.ops[i].optimized == kernels,
                  "%s: op %u took another kernel set", name, i);
            taken += other.ops[i].optimized != 0;
        }
        prv_compare_runs(name, runs);
    }
    free(arena_ref);
    free(arena_other);
    return taken;
}

void engine_pair_models(const char *who, const engine_pair_model_t *models, int count, uint8_t kernels,
                        int same_arena)
{
    int ran = 0;
    for (int i = 0; i < count; i++) {
        uint32_t len = 0;
        uint8_t *model = test_read_file(models[i].path, &len);
        if (model == NULL) {
            printf("%s: %s absent, skipped\n", who, models[i].path);
            continue;
        }
        uint32_t taken = engine_pair_compare(models[i].path, model, len, models[i].runs, kernels, same_arena);
        CHECK(taken >= models[i].min_taken, "%s: only %u ops took kernel set %u", models[i].path, taken,
              kernels);
        free(model);
        ran++;
    }
    CHECK(ran >= 2, "the project's own models must be there");
}
