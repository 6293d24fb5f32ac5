/* What this board gives the engine adapter (core/engine/adapter.c): a static tensor arena, kept for
 * good, and SysTick, which counts core clock cycles, so INFER's cycles are measured, not estimated.
 * Under QEMU -icount shift=0 one tick is 40 instructions (docs/BENCHMARKS.md). */
#include "engine_port.h"

#include "board.h"
#include "tfa/engine_adapter.h"

static tfa_engine_adapter_t prv_adapter;
static uint8_t prv_arena[ENGINE_PORT_ARENA_SIZE] __attribute__((aligned(TFA_ENGINE_ARENA_ALIGN)));

static uint8_t *prv_arena_acquire(void *ctx, uint32_t *size)
{
    (void)ctx;
    *size = ENGINE_PORT_ARENA_SIZE;
    return prv_arena;
}

static uint32_t prv_ticks(void *ctx)
{
    (void)ctx;
    return board_ticks();
}

const tfa_engine_ops_t *engine_port_init(tfa_device_config_t *config)
{
    const tfa_engine_port_t port = {
        .arena_acquire = prv_arena_acquire,
        .ticks = prv_ticks,
        .tick_hz = board_tick_hz(),
        .ticks_are_cycles = 1,
    };
    return tfa_engine_adapter_init(&prv_adapter, &port, config);
}
