/* The kernel table, expanded from the operator list of ops.h, and the dispatch through it. */
#include <stddef.h>

#include "engine_internal.h"
#include "tfa/errors.h"

#define TFA_ENG_OP_ROW(code, name, prepare, run, opt) {(code), #name, (prepare), (run), (opt)},
const tfa_eng_kernel_t tfa_eng_kernels[] = {TFA_ENG_OP_TABLE(TFA_ENG_OP_ROW)};
#undef TFA_ENG_OP_ROW

const uint32_t tfa_eng_kernel_count = (uint32_t)(sizeof tfa_eng_kernels / sizeof tfa_eng_kernels[0]);

int32_t tfa_eng_kernel_find(int32_t code)
{
    for (uint32_t i = 0; i < tfa_eng_kernel_count; i++) {
        if (tfa_eng_kernels[i].code == code) {
            return (int32_t)i;
        }
    }
    return -1;
}

/* The row's variant of a kernel set (TFA_ENGINE_KERNELS_x), or NULL. */
static const tfa_eng_variant_t *prv_variant(const tfa_eng_kernel_t *k, uint8_t kernels)
{
    if (k->optimized == NULL) {
        return NULL;
    }
    return kernels == TFA_ENGINE_KERNELS_DSP ? k->optimized->dsp
           : kernels == TFA_ENGINE_KERNELS_HOST ? k->optimized->host
                                                : NULL;
}

int tfa_eng_prepare_op(tfa_engine_t *e, tfa_eng_op_t *op, uint32_t options)
{
    const int32_t row = tfa_eng_kernel_find(op->code);
    if (row < 0) {
        return -TFA_ERR_UNSUPPORTED_OP;
    }
    const tfa_eng_kernel_t *k = &tfa_eng_kernels[row];
    int rc = k->prepare(e, op, options);
    if (rc != 0) {
        return rc;
    }
    op->kernel = (uint8_t)row;
    /* A kernel's optimized variant computes the same bytes; it is taken when the engine asks for
     * optimized kernels and the variant accepts this op's shapes (its scratch is planned later). */
    op->scratch_bytes = 0;
    op->optimized = 0;
    const tfa_eng_variant_t *v = prv_variant(k, e->use_optimized);
    if (v != NULL && v->select(e, op)) {
        op->optimized = e->use_optimized;
    }
    return 0;
}

void tfa_eng_run_op(const tfa_engine_t *e, const tfa_eng_op_t *op)
{
    const tfa_eng_kernel_t *k = &tfa_eng_kernels[op->kernel];
    (op->optimized ? prv_variant(k, op->optimized)->run : k->run)(e, op);
}

const char *tfa_engine_op_name(int32_t builtin_code)
{
    const int32_t row = tfa_eng_kernel_find(builtin_code);
    return row < 0 ? "UNKNOWN" : tfa_eng_kernels[row].name;
}

int32_t tfa_engine_supported_op(uint32_t i)
{
    return i < tfa_eng_kernel_count ? tfa_eng_kernels[i].code : -1;
}
