/* The contracts a board implements to run the tinyfleet agent (docs/PORTING.md). Copy this directory,
 * replace the bodies in board_template.c by your HAL calls, keep the signatures. Everything else (the
 * runtime, the wire protocol, the engine adapter) comes from core/.
 *
 *   1. storage   board_flash_open: a NOR flash as a tfa_flash_t (tfa/flash.h), with the power-cut rules
 *                of docs/PORTING.md ("Storage")
 *   2. clock     board_ticks, board_tick_hz; BOARD_TICKS_ARE_CYCLES says whether the ticks are core
 *                cycles (a cycle counter: INFER telemetry then reports measured cycles)
 *   3. byte I/O  board_getc, board_putc: the serial link the frames travel on (COBS, tfa/frame.h)
 *   4. identity  board_device_config: hardware class, RAM budget, trusted keys (from your provisioning)
 */
#ifndef TEMPLATE_BOARD_H
#define TEMPLATE_BOARD_H

#include <stdint.h>

#include "tfa/flash.h"
#include "tfa/runtime.h"

/* 1 when board_ticks counts core clock cycles (DWT_CYCCNT, SysTick at the core clock). */
#define BOARD_TICKS_ARE_CYCLES 0

void board_init(void);

/* The flash sized for two slots of slot_size bytes plus the two-sector state area (tfa/runtime.h);
 * slot_size 0 asks for the board's default. NULL when it does not fit. */
const tfa_flash_t *board_flash_open(uint32_t slot_size);

/* Free-running counter wrapping at 2^32, and its rate. */
uint32_t board_ticks(void);
uint32_t board_tick_hz(void);

/* One received byte (0..255), or -1 when none is waiting; never blocks. */
int board_getc(void);
/* Blocking write of one byte to the host link. */
void board_putc(uint8_t c);

/* Fill the identity fields of config: hardware_class, ram_budget, keys, key_count, max_trial_boots.
 * The port fills the rest (slot size, hooks). */
void board_device_config(tfa_device_config_t *config);

#endif
