#include "ram_flash.h"

#include <string.h>

#include "tfa/errors.h"

/* The QEMU harness puts breakpoints on prv_ram_flash_program and prv_ram_flash_erase by name
 * (tinyfleet/sim/qemu.py, FLASH_OP_SYMBOLS) to cut the power before a chosen flash operation. */

static int prv_in_range(const ram_flash_t *rf, uint32_t addr, uint32_t len)
{
    return addr <= rf->size && len <= rf->size - addr;
}

static int prv_ram_flash_read(void *ctx, uint32_t addr, uint8_t *dst, uint32_t len)
{
    const ram_flash_t *rf = ctx;
    if (!prv_in_range(rf, addr, len)) {
        return -TFA_ERR_FLASH_IO;
    }
    memcpy(dst, rf->mem + addr, len);
    return 0;
}

/* Checks the whole range before writing, so a refused program changes nothing. Bytes are then stored
 * one at a time, in order: a power cut in the middle leaves a prefix programmed, as on real NOR. */
static int prv_ram_flash_program(void *ctx, uint32_t addr, const uint8_t *src, uint32_t len)
{
    ram_flash_t *rf = ctx;
    if (!prv_in_range(rf, addr, len)) {
        return -TFA_ERR_FLASH_IO;
    }
    volatile uint8_t *dst = rf->mem + addr;
    for (uint32_t i = 0; i < len; i++) {
        if ((uint8_t)(src[i] & (uint8_t)~dst[i]) != 0u) {
            return -TFA_ERR_FLASH_NOT_ERASED;
        }
    }
    for (uint32_t i = 0; i < len; i++) {
        dst[i] = src[i];
    }
    return 0;
}

static int prv_ram_flash_erase(void *ctx, uint32_t addr)
{
    ram_flash_t *rf = ctx;
    if ((addr & (rf->sector_size - 1u)) != 0u || !prv_in_range(rf, addr, rf->sector_size)) {
        return -TFA_ERR_FLASH_IO;
    }
    volatile uint8_t *dst = rf->mem + addr;
    for (uint32_t i = 0; i < rf->sector_size; i++) {
        dst[i] = 0xFFu;
    }
    return 0;
}

void ram_flash_init(ram_flash_t *state, tfa_flash_t *flash, uint8_t *mem, uint32_t size,
                    uint32_t sector_size)
{
    state->mem = mem;
    state->size = size;
    state->sector_size = sector_size;
    flash->ctx = state;
    flash->size = size;
    flash->sector_size = sector_size;
    flash->mapped = mem;
    flash->read = prv_ram_flash_read;
    flash->program = prv_ram_flash_program;
    flash->erase = prv_ram_flash_erase;
}
