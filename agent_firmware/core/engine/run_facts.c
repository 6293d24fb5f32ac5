/* The port-independent half of tfa_engine_ops_t.last_run, shared by the host and board ports. */
#include "tfa/engine.h"
#include "tfa/errors.h"

int tfa_engine_run_facts(const tfa_engine_t *e, tfa_infer_run_t *run)
{
    tfa_tensor_info_t info;
    if (e == NULL || run == NULL || !e->ready) {
        return -TFA_ERR_BAD_STATE;
    }
    int rc = tfa_engine_output_info(e, 0, &info);
    if (rc != 0) {
        return rc;
    }
    run->arena_bytes = e->arena_used;
    run->output_type = info.type;
    run->zero_point = info.zero_point;
    run->scale = info.scale;
    return 0;
}
