/* The engine wired into a device: the trial self-test hook (tfa_device_config_t.selftest_hook) and the
 * INFER operations (tfa_engine_ops_t, tfa/proto.h) over one engine and one arena. Every port uses this
 * one adapter; a port says only what differs between boards (docs/PORTING.md):
 *
 *   - who owns the arena: arena_acquire gives a buffer (a static array, or memory allocated on demand),
 *     the optional arena_release hands it back when the engine no longer needs it;
 *   - the tick source: a free-running counter at tick_hz, used for the INFER latency;
 *   - cycles: measured (the ticks are core clock cycles, e.g. SysTick or DWT_CYCCNT) or estimated from
 *     the model's operation counts (a simulator, whose own clock says nothing about an MCU's).
 *
 * The engine stays initialised on the active model between INFER requests and is initialised again when
 * the active model changes (slot address or model digest), after a self-test (which reuses the arena)
 * and after tfa_engine_adapter_reset. The arena used is min(arena size given, config->ram_budget).
 *
 * Usage:
 *   static tfa_engine_adapter_t adapter;
 *   tfa_engine_port_t port = {.arena_acquire = my_arena, .ticks = my_ticks, .tick_hz = 25000000u,
 *                             .ticks_are_cycles = 1};
 *   const tfa_engine_ops_t *ops = tfa_engine_adapter_init(&adapter, &port, &config); // sets the hook
 *   tfa_runtime_boot(&rt, flash, &config);  tfa_link_init(&link, &rt, ops);
 */
#ifndef TFA_ENGINE_ADAPTER_H
#define TFA_ENGINE_ADAPTER_H

#include <stdint.h>

#include "tfa/engine.h"
#include "tfa/proto.h"
#include "tfa/runtime.h"

typedef struct tfa_engine_port {
    void *ctx; /* passed to the callbacks */
    /* The arena: its start and, in *size, its bytes; NULL when it cannot be had (ARENA_EXHAUSTED). */
    uint8_t *(*arena_acquire)(void *ctx, uint32_t *size);
    /* Optional (NULL: the arena is never given back): the adapter is done with the arena for now. */
    void (*arena_release)(void *ctx);
    /* Free-running tick counter wrapping at 2^32, at tick_hz (>= 1 MHz keeps the latency exact to 1 us);
     * modulo 2^32 arithmetic times any invoke shorter than 2^32 ticks. */
    uint32_t (*ticks)(void *ctx);
    uint32_t tick_hz;
    /* 1: ticks count core clock cycles, so telemetry reports them as measured cycles at tick_hz.
     * 0: cycles are estimated as mac_count * milli_cycles_per_mac / 1000 + op_count * cycles_per_op at
     * cpu_hz and flagged as estimated (all 0: no estimate). */
    uint8_t ticks_are_cycles;
    uint32_t cpu_hz;
    uint32_t milli_cycles_per_mac;
    uint32_t cycles_per_op;
} tfa_engine_port_t;

/* Adapter state; fields are private. Static or embedded in the port's device struct. */
typedef struct tfa_engine_adapter {
    tfa_engine_port_t port;
    tfa_engine_ops_t ops;
    tfa_engine_t engine;
    uint32_t ram_budget;
    uint8_t *arena; /* held since arena_acquire, NULL after a release */
    uint32_t arena_size;
    uint8_t ready;  /* engine initialised on the model identified below */
    const uint8_t *model;
    uint8_t model_sha256[32];
    uint32_t last_ticks; /* ticks of the last successful invoke */
} tfa_engine_adapter_t;

/* Set up the adapter, plug its self-test hook into config (ram_budget must be set) and return the INFER
 * operations for tfa_link_init. The port struct is copied. */
const tfa_engine_ops_t *tfa_engine_adapter_init(tfa_engine_adapter_t *a, const tfa_engine_port_t *port,
                                                tfa_device_config_t *config);

/* Forget the engine and release the arena (a power cycle: RAM does not survive it). */
void tfa_engine_adapter_reset(tfa_engine_adapter_t *a);

/* The engine on the active model, initialised if needed: BAD_STATE without an active model, else the
 * engine's init error. For a port's own use (the host's model_io); INFER goes through the ops. */
int tfa_engine_adapter_active(tfa_engine_adapter_t *a, const tfa_runtime_t *rt, tfa_engine_t **engine);

/* 1 while the adapter holds an arena. */
int tfa_engine_adapter_holds_arena(const tfa_engine_adapter_t *a);

#endif
