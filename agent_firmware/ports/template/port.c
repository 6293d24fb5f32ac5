/* See port.h. Everything is static: no heap, and the link map shows the RAM each part costs. */
#include "port.h"

#include "board.h"
#include "tfa/errors.h"

#if TEMPLATE_WITH_ENGINE
#include "tfa/engine_adapter.h"

static tfa_engine_adapter_t prv_adapter;
static uint8_t prv_arena[16u * 1024u] __attribute__((aligned(TFA_ENGINE_ARENA_ALIGN)));

static uint8_t *prv_arena_acquire(void *ctx, uint32_t *size)
{
    (void)ctx;
    *size = (uint32_t)sizeof prv_arena;
    return prv_arena;
}

static uint32_t prv_ticks(void *ctx)
{
    (void)ctx;
    return board_ticks();
}
#endif

static tfa_device_config_t prv_config;
static tfa_runtime_t prv_runtime;
static tfa_delta_t prv_delta; /* decoder workspace for compressed and delta packages */
static tfa_link_t prv_link;
static uint8_t prv_tx[TFA_FRAME_MAX_ENCODED];

int port_start(void)
{
    board_init();
    board_device_config(&prv_config);
    const tfa_flash_t *flash = board_flash_open(0);
    if (flash == NULL) {
        return -TFA_ERR_FLASH_IO;
    }
    prv_config.runtime_version = TFA_RUNTIME_VERSION;
    prv_config.slot_size = (flash->size - 2u * flash->sector_size) / 2u;
    prv_config.delta_workspace = &prv_delta;
    const tfa_engine_ops_t *engine = NULL; /* INFER answers UNSUPPORTED_OP */
#if TEMPLATE_WITH_ENGINE
    const tfa_engine_port_t port = {
        .arena_acquire = prv_arena_acquire,
        .ticks = prv_ticks,
        .tick_hz = board_tick_hz(),
        .ticks_are_cycles = BOARD_TICKS_ARE_CYCLES,
    };
    engine = tfa_engine_adapter_init(&prv_adapter, &port, &prv_config);
#endif
    int rc = tfa_runtime_boot(&prv_runtime, flash, &prv_config);
    tfa_link_init(&prv_link, &prv_runtime, engine);
    return rc;
}

uint32_t port_poll(void)
{
    uint32_t handled = 0;
    for (int c = board_getc(); c >= 0; c = board_getc()) {
        handled++;
        uint32_t tx_len = 0;
        if (tfa_link_rx(&prv_link, (uint8_t)c, prv_tx, sizeof prv_tx, &tx_len) != 0) {
            continue;
        }
        for (uint32_t i = 0; i < tx_len; i++) {
            board_putc(prv_tx[i]);
        }
    }
    return handled;
}

tfa_runtime_t *port_runtime(void)
{
    return &prv_runtime;
}
