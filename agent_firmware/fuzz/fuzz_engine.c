/* libFuzzer harness: engine init + invoke on arbitrary model bytes. Every input must be refused with
 * a model/arena/unsupported error or run to completion without a sanitizer report. The model is
 * copied into an exactly sized heap block so that ASan sees any read past its end. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tfa/engine.h"
#include "tfa/errors.h"

enum { ARENA_SIZE = 256 * 1024 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t *arena;
    if (arena == NULL) {
        arena = malloc(ARENA_SIZE);
    }
    if (size > 1u << 20) {
        return 0;
    }
    uint8_t *model = malloc(size ? size : 1);
    memcpy(model, data, size);
    tfa_engine_t e;
    int rc = tfa_engine_init(&e, model, (uint32_t)size, arena, ARENA_SIZE);
    if (rc != 0 && rc != -TFA_ERR_MODEL_INVALID && rc != -TFA_ERR_UNSUPPORTED_OP &&
        rc != -TFA_ERR_ARENA_EXHAUSTED) {
        abort(); /* an error code the engine must not return for a bad model */
    }
    if (rc == 0 && e.mac_count < 20000000u) { /* bounded work per input */
        uint8_t *in;
        uint32_t bytes;
        for (uint32_t i = 0; i < e.input_count; i++) {
            if (tfa_engine_input(&e, i, &in, &bytes) == 0) {
                for (uint32_t k = 0; k < bytes; k++) {
                    in[k] = (uint8_t)(k * 37u + i);
                }
            }
        }
        if (tfa_engine_invoke(&e) != 0) {
            abort();
        }
        const uint8_t *out;
        for (uint32_t i = 0; i < e.output_count; i++) {
            if (tfa_engine_output(&e, i, &out, &bytes) != 0) {
                abort();
            }
        }
    }
    free(model);
    return 0;
}
