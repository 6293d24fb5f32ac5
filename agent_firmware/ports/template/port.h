/* The template port's glue: device config, runtime boot, engine adapter and the receive loop. Board
 * independent: it calls only board.h, so a new board usually keeps this file as it is. */
#ifndef TEMPLATE_PORT_H
#define TEMPLATE_PORT_H

#include "tfa/proto.h"
#include "tfa/runtime.h"

/* Build with -DTEMPLATE_WITH_ENGINE=1 to wire the inference engine (the sources of core/engine linked in). */
#ifndef TEMPLATE_WITH_ENGINE
#define TEMPLATE_WITH_ENGINE 0
#endif

/* Boot: board_init, the runtime from the flash, the link. Returns the runtime's boot result (the link
 * answers either way, so the host can read a boot error in STATE). */
int port_start(void);

/* Handle every byte waiting on the link, sending the responses; returns the bytes handled. */
uint32_t port_poll(void);

/* The runtime, for tests. */
tfa_runtime_t *port_runtime(void);

#endif
