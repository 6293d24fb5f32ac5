#include "flash_contract.h"

#include <stdint.h>
#include <string.h>

#include "tfa/errors.h"

#define PRV_FAIL(msg)                                                                                 \
    do {                                                                                              \
        *why = (msg);                                                                                 \
        return -1;                                                                                    \
    } while (0)

/* Every byte of [addr, addr+len) equals value, through read() and through the mapped view. */
static int prv_all(const tfa_flash_t *f, uint32_t addr, uint32_t len, uint8_t value)
{
    uint8_t buf[64];
    for (uint32_t at = 0; at < len; at += (uint32_t)sizeof buf) {
        uint32_t n = len - at < (uint32_t)sizeof buf ? len - at : (uint32_t)sizeof buf;
        if (f->read(f->ctx, addr + at, buf, n) != 0) {
            return 0;
        }
        for (uint32_t i = 0; i < n; i++) {
            if (buf[i] != value || (f->mapped != NULL && f->mapped[addr + at + i] != value)) {
                return 0;
            }
        }
    }
    return 1;
}

int flash_contract_check(const tfa_flash_t *f, const char **why)
{
    const uint32_t sector = f->sector_size;
    uint8_t buf[8];
    if (f->read == NULL || f->program == NULL || f->erase == NULL) {
        PRV_FAIL("an operation is NULL");
    }
    if (sector < 16u || (sector & (sector - 1u)) != 0u || f->size % sector != 0u || f->size < 4u * sector) {
        PRV_FAIL("geometry: sector_size a power of two >= 16, size a multiple of it, >= 4 sectors");
    }
    const uint32_t last = f->size - sector;
    if (f->erase(f->ctx, 0) != 0 || f->erase(f->ctx, last) != 0) {
        PRV_FAIL("erase of an aligned sector failed");
    }
    if (!prv_all(f, 0, sector, 0xFF) || !prv_all(f, last, sector, 0xFF)) {
        PRV_FAIL("an erased sector does not read 0xFF (read() and mapped must agree)");
    }
    /* Byte granular, any alignment: the state log and the slots are written this way. */
    static const uint8_t pattern[5] = {0x00, 0x5A, 0xA5, 0x7F, 0xFE};
    if (f->program(f->ctx, 3, pattern, 5) != 0 || f->read(f->ctx, 3, buf, 5) != 0 ||
        memcmp(buf, pattern, 5) != 0) {
        PRV_FAIL("program of 5 bytes at offset 3 does not read back");
    }
    if (!prv_all(f, 0, 3, 0xFF) || !prv_all(f, 8, sector - 8u, 0xFF)) {
        PRV_FAIL("program changed bytes outside its range");
    }
    if (f->mapped != NULL && memcmp(f->mapped + 3, pattern, 5) != 0) {
        PRV_FAIL("the mapped view does not show programmed bytes (cache not invalidated?)");
    }
    /* 0 -> 1 needs an erase: refused, and nothing of the request lands. */
    static const uint8_t ones[2] = {0x00, 0xFF};
    if (f->program(f->ctx, 6, ones, 2) != -TFA_ERR_FLASH_NOT_ERASED) { /* 0x7F <- 0x00 fine, 0xFE <- 0xFF not */
        PRV_FAIL("programming a 0 bit back to 1 is not refused with FLASH_NOT_ERASED");
    }
    if (f->read(f->ctx, 6, buf, 2) != 0 || buf[0] != 0x7F || buf[1] != 0xFE) {
        PRV_FAIL("a refused program changed the flash");
    }
    /* Out of range and misaligned requests fail with FLASH_IO, wrap-around included. */
    if (f->read(f->ctx, f->size - 1u, buf, 2) != -TFA_ERR_FLASH_IO ||
        f->read(f->ctx, 1u, buf, UINT32_MAX) != -TFA_ERR_FLASH_IO ||
        f->program(f->ctx, f->size, pattern, 1) != -TFA_ERR_FLASH_IO ||
        f->erase(f->ctx, sector / 2u) != -TFA_ERR_FLASH_IO || f->erase(f->ctx, f->size) != -TFA_ERR_FLASH_IO) {
        PRV_FAIL("an out-of-range or misaligned request did not fail with FLASH_IO");
    }
    /* Erase restores the whole sector and only it. */
    if (f->program(f->ctx, sector, pattern, 1) != 0 || f->erase(f->ctx, 0) != 0 || !prv_all(f, 0, sector, 0xFF)) {
        PRV_FAIL("erase does not set the whole sector back to 0xFF");
    }
    if (f->read(f->ctx, sector, buf, 1) != 0 || buf[0] != pattern[0]) {
        PRV_FAIL("erase touched the next sector");
    }
    if (f->erase(f->ctx, sector) != 0) {
        PRV_FAIL("erase of an aligned sector failed");
    }
    return 0;
}
