/* The narrow board interface the mps2-an386 main loop needs. A new board (an STM32 under Renode, real
 * silicon) implements these few functions and a linker script; everything else comes from core/.
 * docs/PORTING.md states the contracts; ports/template is the skeleton to copy. */
#ifndef BOARD_H
#define BOARD_H

#include <stdint.h>

#include "tfa/flash.h"

/* Clocks, UART and SysTick. Call once before anything else. */
void board_init(void);

/* Blocking write of one byte to the host link (UART0). */
void board_uart_putc(uint8_t c);
/* One received byte (0..255), or -1 if none is waiting. Never blocks. */
int board_uart_getc(void);
/* Sleep until an interrupt (a received byte, a tick); returns at once if a byte is waiting. Lets an
 * idle device (and the emulator running it) use no CPU. */
void board_idle(void);

/* Free-running tick counter at board_tick_hz(), wraps at 2^32 (SysTick at the core clock). */
uint32_t board_ticks(void);
uint32_t board_tick_hz(void);

/* The NOR flash sized for the runtime's layout with two slots of slot_size bytes (state area + 2 slots,
 * tfa/runtime.h); slot_size 0 asks for the board's default. NULL when slot_size is not a multiple of the
 * sector size or does not fit. */
const tfa_flash_t *board_flash_open(uint32_t slot_size);

/* The read-only provisioning record (trusted keys, device config, provision.h) written at the factory:
 * here by the QEMU harness into a fixed page. */
const uint8_t *board_provision_record(uint32_t *len);

#endif
