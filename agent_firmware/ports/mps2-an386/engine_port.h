/* The inference engine wired into this board (firmware-engine.elf only): the trial self-test hook and
 * the INFER operations of tfa/proto.h, over one static tensor arena. */
#ifndef ENGINE_PORT_H
#define ENGINE_PORT_H

#include "tfa/proto.h"
#include "tfa/runtime.h"

/* Tensor arena size; the engine uses min(config->ram_budget, this). */
#define ENGINE_PORT_ARENA_SIZE (96u * 1024u)

/* Plug the self-test hook into config (ram_budget already set) and return the INFER operations. */
const tfa_engine_ops_t *engine_port_init(tfa_device_config_t *config);

#endif
