/* Runs one model on the host library's engine for bench/engine_ir.py: init with a kernel set, a fixed
 * pseudo-random input, `runs` invokes (the input written again before each: the planner may reuse its
 * bytes). Prints the first output bytes' FNV-1a hash so that kernel sets can be compared.
 *
 *   engine_invoke MODEL KERNELS RUNS     KERNELS: 0 reference, 1 DSP (emulated), 2 host */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tfa/engine.h"

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL KERNELS RUNS\n", argv[0]);
        return 2;
    }
    FILE *f = fopen(argv[1], "rb");
    if (f == NULL || fseek(f, 0, SEEK_END) != 0) {
        fprintf(stderr, "cannot read %s\n", argv[1]);
        return 1;
    }
    long len = ftell(f);
    uint8_t *model = malloc((size_t)len);
    rewind(f);
    if (model == NULL || len <= 0 || fread(model, 1, (size_t)len, f) != (size_t)len) {
        fprintf(stderr, "cannot read %s\n", argv[1]);
        return 1;
    }
    fclose(f);
    static uint8_t arena[1u << 20];
    static tfa_engine_t e;
    int rc = tfa_engine_init_kernels(&e, model, (uint32_t)len, arena, sizeof arena, atoi(argv[2]));
    if (rc != 0) {
        fprintf(stderr, "init: %d\n", rc);
        return 1;
    }
    uint8_t *in;
    uint32_t bytes;
    tfa_engine_input(&e, 0, &in, &bytes);
    uint8_t *keep = malloc(bytes);
    uint32_t x = 0x12345678u;
    for (uint32_t i = 0; keep != NULL && i < bytes; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        keep[i] = (uint8_t)x;
    }
    for (int r = 0, runs = atoi(argv[3]); keep != NULL && r < runs; r++) {
        memcpy(in, keep, bytes);
        tfa_engine_invoke(&e);
    }
    const uint8_t *out;
    tfa_engine_output(&e, 0, &out, &bytes);
    uint32_t h = 2166136261u;
    for (uint32_t i = 0; i < bytes; i++) {
        h = (h ^ out[i]) * 16777619u;
    }
    printf("%08x\n", (unsigned)h);
    free(keep);
    free(model);
    return 0;
}
