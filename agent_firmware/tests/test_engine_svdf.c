/* SVDF under ASan + UBSan: two random SVDF models (vectors/engine/svdf_*.tflite: int8 and int16 state,
 * batches 3 and 2, two layers each) run six invocations in sequence, state carried, and every output
 * must equal TFLM's (vectors/engine/svdf_expected.txt, made by make_svdf_models.py); then a reset must
 * give the first output again, the self-test digest must not depend on earlier invocations, and the
 * planner must give each state tensor bytes no other tensor or scratch shares; each kernel set (reference,
 * DSP, host) must take its own SVDF variant and give TFLM's bytes. The keyword model's
 * SVDF layers run against TFLM in tests/device/test_engine_ops_svdf.py. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/engine/engine_internal.h"
#include "check.h"
#include "test_util.h"
#include "tfa/engine.h"

#define DIR "vectors/engine/"
#define ARENA_SIZE (64u * 1024u)
#define RUNS 6

static uint8_t arena[ARENA_SIZE];

static void prv_run(tfa_engine_t *e, int run, const uint8_t **out, uint32_t *out_len)
{
    uint8_t *in;
    uint32_t in_len;
    CHECK_RC(tfa_engine_input(e, 0, &in, &in_len), 0, "input");
    tfa_engine_selftest_input(1000u + (uint32_t)run, in, in_len);
    CHECK_RC(tfa_engine_invoke(e), 0, "invoke");
    CHECK_RC(tfa_engine_output(e, 0, out, out_len), 0, "output");
}

/* Expected output of `file` at `run` from the vector file, into want; its length, or -1. */
static int prv_expected(const char *vectors, const char *file, int run, uint8_t *want, size_t cap)
{
    char key[64];
    snprintf(key, sizeof key, "%s %d ", file, run);
    const char *line = strstr(vectors, key);
    if (line == NULL) {
        return -1;
    }
    char hex[1024];
    size_t n = strcspn(line + strlen(key), "\n");
    if (n >= sizeof hex) {
        return -1;
    }
    memcpy(hex, line + strlen(key), n);
    hex[n] = '\0';
    return test_unhex(hex, want, cap);
}

/* No planned tensor or op scratch overlaps a variable tensor's bytes. */
static void prv_check_state_region(const tfa_engine_t *e, const char *file)
{
    int variables = 0;
    for (uint32_t i = 0; i < e->tensor_count; i++) {
        const tfa_eng_tensor_t *v = &e->tensors[i];
        if (!v->variable) {
            continue;
        }
        variables++;
        CHECK(v->planned, "%s: state %u planned", file, i);
        const uint32_t lo = v->arena_offset, hi = v->arena_offset + tfa_eng_bytes(v);
        for (uint32_t j = 0; j < e->tensor_count; j++) {
            const tfa_eng_tensor_t *t = &e->tensors[j];
            if (j == i || !t->planned || tfa_eng_bytes(t) == 0) {
                continue;
            }
            CHECK(t->arena_offset >= hi || t->arena_offset + tfa_eng_bytes(t) <= lo, "%s: tensor %u overlaps state %u",
                  file, j, i);
        }
        for (uint32_t k = 0; k < e->op_count; k++) {
            const tfa_eng_op_t *op = &e->ops[k];
            CHECK(op->scratch_bytes == 0 || op->scratch_offset >= hi ||
                      op->scratch_offset + op->scratch_bytes <= lo,
                  "%s: op %u scratch overlaps state %u", file, k, i);
        }
    }
    CHECK(variables == 2, "%s: %d state tensors", file, variables);
}

static void test_model(const char *file, const char *vectors)
{
    char path[128];
    snprintf(path, sizeof path, DIR "%s", file);
    uint32_t len = 0;
    uint8_t *model = test_read_file(path, &len);
    CHECK(model != NULL, "%s", path);
    if (model == NULL) {
        return;
    }
    static tfa_engine_t e;
    /* reference, then the DSP kernels (kernels_svdf_dsp.c, emulated), then the host ones */
    for (int kernels = 0; kernels < 3; kernels++) {
        CHECK_RC(tfa_engine_init_kernels(&e, model, len, arena, sizeof arena, kernels), 0, file);
        if (!e.ready) {
            break;
        }
        CHECK(tfa_engine_op_code(&e, 0) == 27 && tfa_engine_op_code(&e, 1) == 27, "%s: two SVDF ops", file);
        for (uint32_t k = 0; k < 2; k++) { /* the optimized SVDF takes both layers, without scratch */
            CHECK(e.ops[k].optimized == kernels && e.ops[k].scratch_bytes == 0, "%s: op %u kernels %d", file,
                  k, kernels);
        }
        prv_check_state_region(&e, file);
        uint8_t first[256];
        uint32_t first_len = 0;
        for (int run = 0; run < RUNS; run++) {
            const uint8_t *out;
            uint32_t out_len;
            prv_run(&e, run, &out, &out_len);
            uint8_t want[256];
            const int n = prv_expected(vectors, file, run, want, sizeof want);
            CHECK(n == (int)out_len && memcmp(out, want, out_len) == 0, "%s run %d: output differs from TFLM",
                  file, run);
            if (run == 0 && out_len <= sizeof first) {
                memcpy(first, out, out_len);
                first_len = out_len;
            }
        }
        /* a digest now equals the one of a fresh engine: it starts from a reset state */
        uint8_t d_used[32], d_fresh[32];
        CHECK_RC(tfa_engine_selftest_digest(&e, 7u, d_used), 0, "digest");
        CHECK_RC(tfa_engine_reset(&e), 0, "reset");
        const uint8_t *out;
        uint32_t out_len;
        prv_run(&e, 0, &out, &out_len);
        CHECK(out_len == first_len && memcmp(out, first, first_len) == 0, "%s: reset replays run 0", file);
        CHECK_RC(tfa_engine_init_kernels(&e, model, len, arena, sizeof arena, kernels), 0, file);
        CHECK_RC(tfa_engine_selftest_digest(&e, 7u, d_fresh), 0, "digest");
        CHECK(memcmp(d_used, d_fresh, 32) == 0, "%s: self-test digest depends on earlier runs", file);
    }
    static tfa_engine_t bad;
    CHECK(tfa_engine_reset(&bad) == -TFA_ERR_BAD_STATE, "reset before init");
    free(model);
}

int main(void)
{
    uint32_t len = 0;
    char *vectors = (char *)test_read_file_terminated(DIR "svdf_expected.txt", &len);
    CHECK(vectors != NULL, "svdf_expected.txt");
    if (vectors != NULL) {
        test_model("svdf_a.tflite", vectors);
        test_model("svdf_b.tflite", vectors);
        free(vectors);
    }
    return test_report("test_engine_svdf");
}
