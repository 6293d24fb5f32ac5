/* One simulated device per handle, see host_device.h. Ports may allocate; the core does not. */
#include "host_device.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "flash_host.h"
#include "tfa/engine.h"
#include "tfa/engine_adapter.h"
#include "tfa/errors.h"
#include "tfa/proto.h"
#include "tfa/runtime.h"
#include "tfa/x25519.h"

/* Room for two full response frames: the device stops reading while it could not queue one more. */
#define PRV_TX_CAP (2u * TFA_FRAME_MAX_ENCODED)

struct tfa_host_device {
    tfa_flash_host_t fh;
    tfa_device_config_t config;
    tfa_trusted_key_t keys[TFA_HOST_MAX_KEYS];
    uint8_t encryption_private[32];
    uint8_t encryption_public[32];
    tfa_model_ram_t model_ram;     /* with a key: a model encrypted at rest runs from here (PROTOCOL 6.6) */
    tfa_runtime_t rt;
    tfa_delta_t delta;             /* decoder workspace for compressed and delta packages */
    tfa_link_t link;
    tfa_engine_adapter_t engine;   /* self-test hook and INFER (core/engine/adapter.c) */
    const tfa_engine_ops_t *engine_ops;
    uint8_t *arena;                /* the engine's, while it holds one */
    uint8_t on;
    uint32_t tx_len;
    uint8_t tx[PRV_TX_CAP];
};

/* ------------------------------------------------------------------ what the engine adapter needs */

/* The arena (ram_budget bytes) is allocated only while the adapter needs it, so that an idle simulated
 * device costs its flash plus a few KiB. */
static uint8_t *prv_arena_acquire(void *ctx, uint32_t *size)
{
    tfa_host_device_t *dev = ctx;
    const uint32_t align = TFA_ENGINE_ARENA_ALIGN;
    if (dev->arena == NULL && dev->config.ram_budget <= UINT32_MAX - align) {
        const uint32_t bytes = (dev->config.ram_budget + align - 1u) & ~(align - 1u);
        dev->arena = aligned_alloc(align, bytes == 0u ? align : bytes);
    }
    *size = dev->config.ram_budget;
    return dev->arena;
}

static void prv_arena_release(void *ctx)
{
    tfa_host_device_t *dev = ctx;
    free(dev->arena);
    dev->arena = NULL;
}

/* A slot's capacity (the largest model this device can hold), so that one buffer serves every model. */
static uint8_t *prv_model_ram_acquire(void *ctx, uint32_t need, uint32_t *size)
{
    const tfa_host_device_t *dev = ctx;
    const uint32_t slot_cap = dev->config.slot_size - TFA_SLOT_MODEL_OFFSET; /* boot checked the geometry */
    const uint32_t cap = ((slot_cap > need ? slot_cap : need) + 15u) & ~15u;
    uint8_t *buf = aligned_alloc(16, cap);
    *size = buf != NULL ? cap : 0u;
    return buf;
}

/* Microseconds: the host's clock times the call, but says nothing about an MCU's cycles (estimated). */
static uint32_t prv_ticks_us(void *ctx)
{
    (void)ctx;
    struct timespec ts;
    timespec_get(&ts, TIME_UTC);
    return (uint32_t)((uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u);
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
    return cfg->key_count <= TFA_HOST_MAX_KEYS && (cfg->keys != NULL || cfg->key_count == 0u) &&
           cfg->require_encryption <= 1u;
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
    dev->config.delta_workspace = &dev->delta;
    if (cfg->encryption_key != NULL) {
        memcpy(dev->encryption_private, cfg->encryption_key, 32);
        tfa_x25519_base(dev->encryption_public, dev->encryption_private);
        dev->config.encryption_private = dev->encryption_private;
        dev->config.encryption_public = dev->encryption_public;
        /* A model installed encrypted stays encrypted in flash; the engine runs it from RAM allocated
         * when the first such model needs it. */
        dev->model_ram.acquire = prv_model_ram_acquire;
        dev->model_ram.acquire_ctx = dev;
        dev->config.model_ram = &dev->model_ram;
    }
    dev->config.require_encryption = (uint8_t)cfg->require_encryption;
    const tfa_engine_port_t port = {
        .ctx = dev,
        .arena_acquire = prv_arena_acquire,
        .arena_release = prv_arena_release,
        .ticks = prv_ticks_us,
        .tick_hz = 1000000u,
        .ticks_are_cycles = 0,
        .cpu_hz = cfg->cpu_hz,
        .milli_cycles_per_mac = cfg->milli_cycles_per_mac,
        .cycles_per_op = cfg->cycles_per_op,
    };
    dev->engine_ops = tfa_engine_adapter_init(&dev->engine, &port, &dev->config);
    *out = dev;
    return 0;
}

void tfa_host_destroy(tfa_host_device_t *dev)
{
    if (dev == NULL) {
        return;
    }
    tfa_engine_adapter_reset(&dev->engine);
    tfa_flash_host_free(&dev->fh);
    free(dev->model_ram.buf);
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
    tfa_engine_adapter_reset(&dev->engine);
    memset(&dev->rt, 0, sizeof dev->rt);
    int rc = tfa_runtime_boot(&dev->rt, &dev->fh.flash, &dev->config);
    if (rc != 0 || tfa_flash_host_is_off(&dev->fh)) {
        return rc != 0 ? rc : -TFA_ERR_FLASH_IO;
    }
    tfa_link_init(&dev->link, &dev->rt, dev->engine_ops);
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
    tfa_engine_adapter_reset(&dev->engine);
    memcpy(dev->fh.mem, image, len);
    return 0;
}

int tfa_host_model_io(tfa_host_device_t *dev, tfa_tensor_info_t *input, tfa_tensor_info_t *output)
{
    if (!dev->on) {
        return -TFA_ERR_BAD_STATE;
    }
    tfa_engine_t *e = NULL;
    int rc = tfa_engine_adapter_active(&dev->engine, &dev->rt, &e);
    rc = rc != 0 ? rc : tfa_engine_input_info(e, 0, input);
    return rc != 0 ? rc : tfa_engine_output_info(e, 0, output);
}

uint32_t tfa_host_memory_bytes(const tfa_host_device_t *dev)
{
    const uint32_t arena = dev->arena != NULL ? dev->config.ram_budget : 0u;
    return (uint32_t)sizeof *dev + dev->fh.flash.size + arena + dev->model_ram.size;
}
