/* A NOR flash emulated in RAM: program only clears bits, erase sets a whole sector to 0xFF.
 * Board-independent; the board gives it the memory region. */
#ifndef RAM_FLASH_H
#define RAM_FLASH_H

#include <stdint.h>

#include "tfa/flash.h"

typedef struct ram_flash {
    uint8_t *mem;
    uint32_t size;
    uint32_t sector_size;
} ram_flash_t;

/* Fill flash (the tfa_flash_t the core sees) to drive state over mem[0, size). sector_size must be a
 * power of two dividing size. The region's contents are kept: they are the flash's. */
void ram_flash_init(ram_flash_t *state, tfa_flash_t *flash, uint8_t *mem, uint32_t size,
                    uint32_t sector_size);

#endif
