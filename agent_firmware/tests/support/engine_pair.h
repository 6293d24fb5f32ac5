/* One model run by two engines, the reference kernels and another kernel set, on the same inputs: the
 * oracle check shared by test_engine_dsp.c and test_engine_host.c. */
#ifndef ENGINE_PAIR_H
#define ENGINE_PAIR_H

#include <stdint.h>

typedef struct {
    const char *path;      /* a .tflite; one that is absent (the shared models) is skipped */
    int runs;              /* inputs: run 0 all -128, run 1 all 127, then random */
    uint32_t min_taken;    /* ops the kernel set must take, at least */
} engine_pair_model_t;

/* Runs `model` with TFA_ENGINE_KERNELS_REFERENCE and with `kernels` (a TFA_ENGINE_KERNELS_x): every
 * output byte and the self-test digests must be identical, each op must run the reference or `kernels`,
 * and with same_arena the arena used must be exactly the reference's. Returns the ops `kernels` took. */
uint32_t engine_pair_compare(const char *name, const uint8_t *model, uint32_t len, int runs, uint8_t kernels,
                             int same_arena);

/* engine_pair_compare over a table of models; checks min_taken and that at least 2 of them ran (the
 * project's own models are always there). `who` prefixes the "absent, skipped" lines. */
void engine_pair_models(const char *who, const engine_pair_model_t *models, int count, uint8_t kernels,
                        int same_arena);

#endif
