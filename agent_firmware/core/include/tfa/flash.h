/* The storage contract a port provides: a NOR flash seen through three operations.
 * The core never touches flash any other way. Each device instance owns one tfa_flash_t, so one
 * process can host many simulated devices. No function may be left NULL (no weak defaults). */
#ifndef TFA_FLASH_H
#define TFA_FLASH_H

#include <stdint.h>

typedef struct tfa_flash {
    void *ctx;
    uint32_t size;         /* total bytes */
    uint32_t sector_size;  /* erase unit, a power of two */
    /* Memory-mapped view of the flash (execute/read in place), or NULL if the port has none.
     * The inference engine reads the model's weights through it without copying. */
    const uint8_t *mapped;
    /* All return 0 or -TFA_ERR_x. program() may only turn 1 bits into 0 bits: a port with NOR
     * rules returns -TFA_ERR_FLASH_NOT_ERASED when asked to set a 0 bit back to 1.
     * erase() takes a sector-aligned address and sets that sector to 0xFF. */
    int (*read)(void *ctx, uint32_t addr, uint8_t *dst, uint32_t len);
    int (*program)(void *ctx, uint32_t addr, const uint8_t *src, uint32_t len);
    int (*erase)(void *ctx, uint32_t addr);
} tfa_flash_t;

#endif
