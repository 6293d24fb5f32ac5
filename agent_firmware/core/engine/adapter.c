/* The one engine adapter every port uses, see tfa/engine_adapter.h. */
#include "tfa/engine_adapter.h"

#include <string.h>

#include "tfa/errors.h"

static int prv_acquire(tfa_engine_adapter_t *a)
{
    if (a->arena == NULL) {
        uint32_t size = 0;
        uint8_t *arena = a->port.arena_acquire(a->port.ctx, &size);
        if (arena == NULL) {
            return -TFA_ERR_ARENA_EXHAUSTED;
        }
        a->arena = arena;
        a->arena_size = size < a->ram_budget ? size : a->ram_budget;
    }
    return 0;
}

static void prv_release(tfa_engine_adapter_t *a)
{
    a->ready = 0;
    if (a->port.arena_release != NULL && a->arena != NULL) {
        a->port.arena_release(a->port.ctx);
        a->arena = NULL; /* a static arena (no release) is simply kept */
    }
}

void tfa_engine_adapter_reset(tfa_engine_adapter_t *a)
{
    prv_release(a);
}

int tfa_engine_adapter_holds_arena(const tfa_engine_adapter_t *a)
{
    return a->arena != NULL;
}

/* Trial self-test on the model in place; the engine must then be initialised again for INFER. */
static int prv_selftest_hook(void *ctx, const tfa_manifest_t *manifest, const uint8_t *model,
                             uint32_t model_len)
{
    tfa_engine_adapter_t *a = ctx;
    a->ready = 0;
    if (manifest->selftest_seed == 0u) {
        return 0; /* no self-test: the arena is not even needed */
    }
    int rc = prv_acquire(a);
    if (rc == 0) {
        tfa_engine_selftest_ctx_t sctx = {&a->engine, a->arena, a->arena_size};
        rc = tfa_engine_selftest_hook(&sctx, manifest, model, model_len);
    }
    prv_release(a);
    return rc;
}

int tfa_engine_adapter_active(tfa_engine_adapter_t *a, const tfa_runtime_t *rt, tfa_engine_t **engine)
{
    uint32_t len = 0;
    const uint8_t *model = tfa_active_model(rt, &len);
    const tfa_manifest_t *m = tfa_active_manifest(rt);
    if (model == NULL || m == NULL) {
        return -TFA_ERR_BAD_STATE;
    }
    *engine = &a->engine;
    if (a->ready && a->model == model && memcmp(a->model_sha256, m->model_sha256, 32) == 0) {
        return 0;
    }
    a->ready = 0;
    int rc = prv_acquire(a);
    rc = rc != 0 ? rc : tfa_engine_init(&a->engine, model, len, a->arena, a->arena_size);
    if (rc != 0) {
        prv_release(a);
        return rc;
    }
    a->model = model;
    memcpy(a->model_sha256, m->model_sha256, 32);
    a->ready = 1;
    return 0;
}

static int prv_write_input(void *ctx, const tfa_runtime_t *rt, uint32_t offset, const uint8_t *data,
                           uint32_t len)
{
    tfa_engine_adapter_t *a = ctx;
    tfa_engine_t *e = NULL;
    uint8_t *in = NULL;
    uint32_t bytes = 0;
    int rc = tfa_engine_adapter_active(a, rt, &e);
    rc = rc != 0 ? rc : tfa_engine_input(e, 0, &in, &bytes);
    if (rc != 0) {
        return rc;
    }
    if (offset > bytes || len > bytes - offset) {
        return -TFA_ERR_BAD_OFFSET; /* beyond the first input tensor */
    }
    memcpy(in + offset, data, len);
    return 0;
}

static int prv_invoke(void *ctx, const tfa_runtime_t *rt, uint8_t *out, uint32_t out_cap, uint32_t *out_len,
                      uint32_t *latency_us)
{
    tfa_engine_adapter_t *a = ctx;
    tfa_engine_t *e = NULL;
    int rc = tfa_engine_adapter_active(a, rt, &e);
    if (rc != 0) {
        return rc;
    }
    const uint32_t start = a->port.ticks(a->port.ctx);
    rc = tfa_engine_invoke(e);
    const uint32_t ticks = a->port.ticks(a->port.ctx) - start; /* modulo 2^32, see the header */
    const uint8_t *result = NULL;
    uint32_t bytes = 0;
    rc = rc != 0 ? rc : tfa_engine_output(e, 0, &result, &bytes);
    if (rc != 0) {
        return rc;
    }
    if (bytes > out_cap) {
        return -TFA_ERR_TOO_LARGE; /* an output tensor that does not fit one frame */
    }
    memcpy(out, result, bytes);
    *out_len = bytes;
    a->last_ticks = ticks;
    const uint64_t us = a->port.tick_hz != 0u ? (uint64_t)ticks * 1000000u / a->port.tick_hz : 0u;
    *latency_us = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
    return 0;
}

/* Telemetry facts of the invoke that just succeeded (tfa_engine_ops_t.last_run). */
static int prv_last_run(void *ctx, const tfa_runtime_t *rt, tfa_infer_run_t *run)
{
    tfa_engine_adapter_t *a = ctx;
    tfa_tensor_info_t info;
    (void)rt;
    if (!a->ready || tfa_engine_output_info(&a->engine, 0, &info) != 0) {
        return -TFA_ERR_BAD_STATE;
    }
    const tfa_engine_t *e = &a->engine;
    const tfa_engine_port_t *p = &a->port;
    run->arena_bytes = e->arena_used;
    run->output_type = info.type;
    run->zero_point = info.zero_point;
    run->scale = info.scale;
    if (p->ticks_are_cycles) {
        run->cycles = a->last_ticks;
        run->cpu_hz = p->tick_hz;
        run->estimated = 0;
    } else {
        run->cycles = e->mac_count * p->milli_cycles_per_mac / 1000u + (uint64_t)e->op_count * p->cycles_per_op;
        run->cpu_hz = p->cpu_hz;
        run->estimated = 1;
    }
    return 0;
}

const tfa_engine_ops_t *tfa_engine_adapter_init(tfa_engine_adapter_t *a, const tfa_engine_port_t *port,
                                                tfa_device_config_t *config)
{
    memset(a, 0, sizeof *a);
    a->port = *port;
    a->ram_budget = config->ram_budget;
    config->selftest_hook = prv_selftest_hook;
    config->selftest_ctx = a;
    a->ops.ctx = a;
    a->ops.write_input = prv_write_input;
    a->ops.invoke = prv_invoke;
    a->ops.last_run = prv_last_run;
    return &a->ops;
}
