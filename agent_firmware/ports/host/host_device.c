/* One simulated device per handle, see host_device.h. Ports may allocate; the core does not. */
#include "host_device.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "flash_host.h"
#include "tfa/engine.h"
#include "tfa/errors.h"
#include "tfa/proto.h"
#include "tfa/runtime.h"

/* Room for two full response frames: the device stops reading while it could not queue one more. */
#define PRV_TX_CAP (2u * TFA_FRAME_MAX_ENCODED)

struct tfa_host_device {
    tfa_flash_host_t fh;
    tfa_device_config_t config;
    tfa_trusted_key_t keys[TFA_HOST_MAX_KEYS];
    tfa_runtime_t rt;
    tfa_delta_t delta;             /* decoder workspace for compressed and delta packages */
    tfa_link_t link;
    tfa_engine_ops_t engine_ops;
    /* The inference engine's RAM: the arena (ram_budget bytes) is allocated only while needed, so that
     * an idle simulated device costs its flash plus a few KiB. */
    tfa_engine_t engine;
    uint8_t *arena;
    uint8_t engine_ready;          /* engine initialised on the model identified below */
    const uint8_t *engine_model;
    uint8_t engine_model_sha[32];
    uint32_t cpu_hz;               /* latency model, see tfa_host_config_t */
    uint32_t milli_cycles_per_mac;
    uint32_t cycles_per_op;
    uint8_t on;
    uint32_t tx_len;
    uint8_t tx[PRV_TX_CAP];
};

/* ------------------------------------------------------------------ inference engine adapter */

static int prv_arena(tfa_host_device_t *dev)
{
    if (dev->arena == NULL) {
        const uint32_t align = TFA_ENGINE_ARENA_ALIGN;
        if (dev->config.ram_budget > UINT32_MAX - align) {
            return -TFA_ERR_ARENA_EXHAUSTED;
        }
        const uint32_t size = (dev->config.ram_budget + align - 1u) & ~(align - 1u);
        dev->arena = aligned_alloc(TFA_ENGINE_ARENA_ALIGN, size == 0u ? TFA_ENGINE_ARENA_ALIGN : size);
        if (dev->arena == NULL) {
            return -TFA_ERR_ARENA_EXHAUSTED;
        }
    }
    return 0;
}

static void prv_release_engine(tfa_host_device_t *dev)
{
    free(dev->arena);
    dev->arena = NULL;
    dev->engine_ready = 0;
}

/* Trial self-test: the engine runs the manifest's self-test on the model in place, then its RAM goes. */
static int prv_selftest_hook(void *ctx, const tfa_manifest_t *manifest, const uint8_t *model,
                             uint32_t model_len)
{
    tfa_host_device_t *dev = ctx;
    if (manifest->selftest_seed == 0u) {
        return 0;
    }
    int rc = prv_arena(dev);
    if (rc == 0) {
        tfa_engine_selftest_ctx_t sctx = {&dev->engine, dev->arena, dev->config.ram_budget};
        rc = tfa_engine_selftest_hook(&sctx, manifest, model, model_len);
    }
    prv_release_engine(dev);
    return rc;
}

/* The engine, initialised on the active model (again if the active model changed). */
static int prv_engine_for_active(tfa_host_device_t *dev)
{
    uint32_t len = 0;
    const uint8_t *model = tfa_active_model(&dev->rt, &len);
    const tfa_manifest_t *m = tfa_active_manifest(&dev->rt);
    if (model == NULL || m == NULL) {
        return -TFA_ERR_BAD_STATE;
    }
    if (dev->engine_ready && dev->engine_model == model &&
        memcmp(dev->engine_model_sha, m->model_sha256, 32) == 0) {
        return 0;
    }
    dev->engine_ready = 0;
    int rc = prv_arena(dev);
    rc = rc != 0 ? rc : tfa_engine_init(&dev->engine, model, len, dev->arena, dev->config.ram_budget);
    if (rc != 0) {
        prv_release_engine(dev);
        return rc;
    }
    memcpy(dev->engine_model_sha, m->model_sha256, 32);
    dev->engine_model = model;
    dev->engine_ready = 1;
    return 0;
}

static int prv_write_input(void *ctx, const tfa_runtime_t *rt, uint32_t offset, const uint8_t *data,
                           uint32_t len)
{
    tfa_host_device_t *dev = ctx;
    (void)rt;
    int rc = prv_engine_for_active(dev);
    uint8_t *in = NULL;
    uint32_t bytes = 0;
    rc = rc != 0 ? rc : tfa_engine_input(&dev->engine, 0, &in, &bytes);
    if (rc != 0) {
        return rc;
    }
    if (offset > bytes || len > bytes - offset) {
        return -TFA_ERR_BAD_OFFSET; /* beyond the first input tensor */
    }
    memcpy(in + offset, data, len);
    return 0;
}

static uint64_t prv_now_us(void)
{
    struct timespec ts;
    timespec_get(&ts, TIME_UTC);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int prv_invoke(void *ctx, const tfa_runtime_t *rt, uint8_t *out, uint32_t out_cap, uint32_t *out_len,
                      uint32_t *latency_us)
{
    tfa_host_device_t *dev = ctx;
    (void)rt;
    int rc = prv_engine_for_active(dev);
    if (rc != 0) {
        return rc;
    }
    const uint64_t start = prv_now_us();
    rc = tfa_engine_invoke(&dev->engine);
    const uint64_t took = prv_now_us() - start;
    const uint8_t *result = NULL;
    uint32_t bytes = 0;
    rc = rc != 0 ? rc : tfa_engine_output(&dev->engine, 0, &result, &bytes);
    if (rc != 0) {
        return rc;
    }
    if (bytes > out_cap) {
        return -TFA_ERR_TOO_LARGE; /* an output tensor that does not fit one frame */
    }
    memcpy(out, result, bytes);
    *out_len = bytes;
    *latency_us = took > UINT32_MAX ? UINT32_MAX : (uint32_t)took;
    return 0;
}

/* Telemetry facts of the last invoke: cycles estimated from the engine's operation counts, since the
 * host's own clock says nothing about a microcontroller's. */
static int prv_last_run(void *ctx, const tfa_runtime_t *rt, tfa_infer_run_t *run)
{
    tfa_host_device_t *dev = ctx;
    (void)rt;
    if (!dev->engine_ready) {
        return -TFA_ERR_BAD_STATE;
    }
    int rc = tfa_engine_run_facts(&dev->engine, run);
    if (rc != 0) {
        return rc;
    }
    const tfa_engine_t *e = &dev->engine;
    run->cycles = e->mac_count * dev->milli_cycles_per_mac / 1000u + (uint64_t)e->op_count * dev->cycles_per_op;
    run->cpu_hz = dev->cpu_hz;
    run->estimated = 1;
    return 0;
}

static int prv_config_ok(const tfa_host_config_t *cfg)
{
    const uint32_t sector = cfg->sector_size;
    if (sector < 16u || (sector & (sector - 1u)) != 0u) {
        return 0;
    }
    if (cfg->slot_size == 0u || cfg->slot_size % sector != 0u || cfg->max_trial_boots > 0xFFu) {
        return 0;
    }
    /* Two state sectors plus two slots must fit the 32-bit flash address space. */
    if (cfg->slot_size > (UINT32_MAX - 2u * sector) / 2u) {
        return 0;
    }
    return cfg->key_count <= TFA_HOST_MAX_KEYS && (cfg->keys != NULL || cfg->key_count == 0u);
}

int tfa_host_create(const tfa_host_config_t *cfg, tfa_host_device_t **out)
{
    *out = NULL;
    if (cfg == NULL || !prv_config_ok(cfg)) {
        return -TFA_ERR_FIELD_RANGE;
    }
    tfa_host_device_t *dev = calloc(1, sizeof *dev);
    if (dev == NULL) {
        return -TFA_ERR_FLASH_IO;
    }
    const uint32_t flash_size = 2u * cfg->sector_size + 2u * cfg->slot_size;
    int rc = tfa_flash_host_init(&dev->fh, NULL, flash_size, cfg->sector_size);
    if (rc != 0) {
        free(dev);
        return rc;
    }
    for (uint32_t i = 0; i < cfg->key_count; i++) {
        const uint8_t *rec = cfg->keys + i * TFA_HOST_KEY_RECORD;
        memcpy(dev->keys[i].key_id, rec, 8);
        memcpy(dev->keys[i].public_key, rec + 8, 32);
    }
    dev->config.hardware_class = cfg->hardware_class;
    dev->config.runtime_version = cfg->runtime_version;
    dev->config.ram_budget = cfg->ram_budget;
    dev->config.slot_size = cfg->slot_size;
    dev->config.keys = dev->keys;
    dev->config.key_count = cfg->key_count;
    dev->config.max_trial_boots = (uint8_t)cfg->max_trial_boots;
    dev->config.selftest_hook = prv_selftest_hook;
    dev->config.selftest_ctx = dev;
    dev->config.delta_workspace = &dev->delta;
    dev->engine_ops.ctx = dev;
    dev->engine_ops.write_input = prv_write_input;
    dev->engine_ops.invoke = prv_invoke;
    dev->engine_ops.last_run = prv_last_run;
    dev->cpu_hz = cfg->cpu_hz;
    dev->milli_cycles_per_mac = cfg->milli_cycles_per_mac;
    dev->cycles_per_op = cfg->cycles_per_op;
    *out = dev;
    return 0;
}

void tfa_host_destroy(tfa_host_device_t *dev)
{
    if (dev == NULL) {
        return;
    }
    prv_release_engine(dev);
    tfa_flash_host_free(&dev->fh);
    free(dev);
}

int tfa_host_boot(tfa_host_device_t *dev)
{
    dev->on = 0;
    dev->tx_len = 0;
    if (tfa_flash_host_is_off(&dev->fh)) {
        tfa_flash_host_power_on(&dev->fh);
    }
    /* RAM does not survive a power cycle: the runtime, the engine and the link start from zero. */
    prv_release_engine(dev);
    memset(&dev->rt, 0, sizeof dev->rt);
    int rc = tfa_runtime_boot(&dev->rt, &dev->fh.flash, &dev->config);
    if (rc != 0 || tfa_flash_host_is_off(&dev->fh)) {
        return rc != 0 ? rc : -TFA_ERR_FLASH_IO;
    }
    tfa_link_init(&dev->link, &dev->rt, &dev->engine_ops);
    dev->on = 1;
    return 0;
}

int tfa_host_power_cycle(tfa_host_device_t *dev)
{
    return tfa_host_boot(dev);
}

int tfa_host_is_on(const tfa_host_device_t *dev)
{
    return dev->on;
}

int tfa_host_uart_write(tfa_host_device_t *dev, const uint8_t *data, uint32_t len, uint32_t *accepted)
{
    *accepted = 0;
    if (!dev->on) {
        *accepted = len; /* nobody listens on a dead UART */
        return 0;
    }
    for (uint32_t i = 0; i < len; i++) {
        if (PRV_TX_CAP - dev->tx_len < TFA_FRAME_MAX_ENCODED) {
            return 0; /* output queue full: the host must read first */
        }
        uint32_t n = 0;
        int rc = tfa_link_rx(&dev->link, data[i], dev->tx + dev->tx_len, PRV_TX_CAP - dev->tx_len, &n);
        *accepted = i + 1u;
        if (tfa_flash_host_is_off(&dev->fh)) {
            dev->on = 0; /* the power went during this request: its response is never sent */
            *accepted = len;
            return 0;
        }
        if (rc != 0) {
            return rc;
        }
        dev->tx_len += n;
    }
    return 0;
}

uint32_t tfa_host_uart_read(tfa_host_device_t *dev, uint8_t *out, uint32_t cap)
{
    const uint32_t n = cap < dev->tx_len ? cap : dev->tx_len;
    memcpy(out, dev->tx, n);
    memmove(dev->tx, dev->tx + n, dev->tx_len - n);
    dev->tx_len -= n;
    return n;
}

void tfa_host_arm_power_cut(tfa_host_device_t *dev, uint32_t n, uint32_t mode, uint32_t seed)
{
    if (mode > TFA_CUT_COMPLETE) {
        mode = TFA_CUT_NOTHING;
    }
    tfa_flash_host_cut_after(&dev->fh, n, (tfa_cut_mode_t)mode, seed);
}

uint32_t tfa_host_flash_ops(const tfa_host_device_t *dev)
{
    return tfa_flash_host_op_count(&dev->fh);
}

uint32_t tfa_host_flash_size(const tfa_host_device_t *dev)
{
    return dev->fh.flash.size;
}

int tfa_host_flash_read(const tfa_host_device_t *dev, uint8_t *out, uint32_t len)
{
    if (len != dev->fh.flash.size) {
        return -TFA_ERR_SIZE_MISMATCH;
    }
    memcpy(out, dev->fh.mem, len);
    return 0;
}

int tfa_host_flash_load(tfa_host_device_t *dev, const uint8_t *image, uint32_t len)
{
    if (len != dev->fh.flash.size) {
        return -TFA_ERR_SIZE_MISMATCH;
    }
    dev->on = 0;
    dev->tx_len = 0;
    prv_release_engine(dev);
    memcpy(dev->fh.mem, image, len);
    return 0;
}

int tfa_host_model_io(tfa_host_device_t *dev, tfa_tensor_info_t *input, tfa_tensor_info_t *output)
{
    if (!dev->on) {
        return -TFA_ERR_BAD_STATE;
    }
    int rc = prv_engine_for_active(dev);
    rc = rc != 0 ? rc : tfa_engine_input_info(&dev->engine, 0, input);
    return rc != 0 ? rc : tfa_engine_output_info(&dev->engine, 0, output);
}

uint32_t tfa_host_memory_bytes(const tfa_host_device_t *dev)
{
    const uint32_t arena = dev->arena != NULL ? dev->config.ram_budget : 0u;
    return (uint32_t)sizeof *dev + dev->fh.flash.size + arena;
}
