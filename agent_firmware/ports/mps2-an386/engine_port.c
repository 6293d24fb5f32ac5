/* One engine and one arena serve both the trial self-test and INFER. The engine stays initialised on
 * the active model between INFER requests; it is re-initialised when the active model changes (slot
 * address or model digest) and after every self-test, which reuses the arena. */
#include "engine_port.h"

#include <string.h>

#include "board.h"
#include "tfa/engine.h"
#include "tfa/errors.h"

static tfa_engine_t prv_engine;
static uint8_t prv_arena[ENGINE_PORT_ARENA_SIZE] __attribute__((aligned(TFA_ENGINE_ARENA_ALIGN)));
static uint32_t prv_arena_size;
static uint8_t prv_ready;
static const uint8_t *prv_model;
static uint8_t prv_model_sha[32];
static uint32_t prv_last_ticks; /* SysTick ticks (core clock cycles) of the last successful invoke */
static tfa_engine_ops_t prv_ops;

static int prv_selftest_hook(void *ctx, const tfa_manifest_t *manifest, const uint8_t *model,
                             uint32_t model_len)
{
    (void)ctx;
    prv_ready = 0; /* the self-test re-initialises the engine on the trial model */
    tfa_engine_selftest_ctx_t sctx = {&prv_engine, prv_arena, prv_arena_size};
    return tfa_engine_selftest_hook(&sctx, manifest, model, model_len);
}

static int prv_engine_for_active(const tfa_runtime_t *rt)
{
    uint32_t len = 0;
    const uint8_t *model = tfa_active_model(rt, &len);
    const tfa_manifest_t *m = tfa_active_manifest(rt);
    if (model == NULL || m == NULL) {
        return -TFA_ERR_BAD_STATE;
    }
    if (prv_ready && prv_model == model && memcmp(prv_model_sha, m->model_sha256, 32) == 0) {
        return 0;
    }
    prv_ready = 0;
    int rc = tfa_engine_init(&prv_engine, model, len, prv_arena, prv_arena_size);
    if (rc != 0) {
        return rc;
    }
    prv_model = model;
    memcpy(prv_model_sha, m->model_sha256, 32);
    prv_ready = 1;
    return 0;
}

static int prv_write_input(void *ctx, const tfa_runtime_t *rt, uint32_t offset, const uint8_t *data,
                           uint32_t len)
{
    (void)ctx;
    uint8_t *in = NULL;
    uint32_t bytes = 0;
    int rc = prv_engine_for_active(rt);
    rc = rc != 0 ? rc : tfa_engine_input(&prv_engine, 0, &in, &bytes);
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
    (void)ctx;
    int rc = prv_engine_for_active(rt);
    if (rc != 0) {
        return rc;
    }
    const uint32_t start = board_ticks();
    rc = tfa_engine_invoke(&prv_engine);
    /* Modulo 2^32: right for any invoke shorter than 2^32 ticks (171 s at 25 MHz). */
    const uint32_t ticks = board_ticks() - start;
    const uint8_t *result = NULL;
    uint32_t bytes = 0;
    rc = rc != 0 ? rc : tfa_engine_output(&prv_engine, 0, &result, &bytes);
    if (rc != 0) {
        return rc;
    }
    if (bytes > out_cap) {
        return -TFA_ERR_TOO_LARGE; /* an output tensor that does not fit one frame */
    }
    memcpy(out, result, bytes);
    *out_len = bytes;
    prv_last_ticks = ticks;
    *latency_us = ticks / (board_tick_hz() / 1000000u);
    return 0;
}

/* Measured, not estimated: SysTick counts the core clock, so its ticks are CPU cycles. Under QEMU
 * -icount shift=0 one tick is 40 instructions (docs/BENCHMARKS.md): ticks x 40 = instructions. */
static int prv_last_run(void *ctx, const tfa_runtime_t *rt, tfa_infer_run_t *run)
{
    (void)ctx;
    (void)rt;
    if (!prv_ready) {
        return -TFA_ERR_BAD_STATE;
    }
    int rc = tfa_engine_run_facts(&prv_engine, run);
    if (rc != 0) {
        return rc;
    }
    run->cycles = prv_last_ticks;
    run->cpu_hz = board_tick_hz();
    run->estimated = 0;
    return 0;
}

const tfa_engine_ops_t *engine_port_init(tfa_device_config_t *config)
{
    prv_arena_size = config->ram_budget < ENGINE_PORT_ARENA_SIZE ? config->ram_budget : ENGINE_PORT_ARENA_SIZE;
    prv_ready = 0;
    config->selftest_hook = prv_selftest_hook;
    config->selftest_ctx = 0;
    prv_ops.ctx = 0;
    prv_ops.write_input = prv_write_input;
    prv_ops.invoke = prv_invoke;
    prv_ops.last_run = prv_last_run;
    return &prv_ops;
}
