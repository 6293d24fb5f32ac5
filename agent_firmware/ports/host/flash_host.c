#include "flash_host.h"

#include <stdlib.h>
#include <string.h>

#include "tfa/errors.h"

static uint32_t prv_rand(tfa_flash_host_t *fh)
{
    uint32_t s = fh->rng;
    s ^= s << 13;
    s ^= s >> 17;
    s ^= s << 5;
    fh->rng = s;
    return s;
}

/* Counts the operation and tells whether it may run: 1 normal, 0 torn (the cut happens now),
 * -1 refused (power already gone). */
static int prv_power_gate(tfa_flash_host_t *fh)
{
    if (fh->powered_off) {
        return -1;
    }
    fh->op_count++;
    if (fh->cut_at != 0u && fh->op_count >= fh->cut_at) {
        fh->powered_off = 1;
        fh->cut_at = 0;
        return 0;
    }
    return 1;
}

static int prv_range_ok(const tfa_flash_host_t *fh, uint32_t addr, uint32_t len)
{
    return addr <= fh->flash.size && len <= fh->flash.size - addr;
}

static int prv_read(void *ctx, uint32_t addr, uint8_t *dst, uint32_t len)
{
    tfa_flash_host_t *fh = ctx;
    if (!prv_range_ok(fh, addr, len) || (dst == NULL && len != 0u)) {
        return -TFA_ERR_FLASH_IO;
    }
    if (len != 0u) {
        memcpy(dst, fh->mem + addr, len);
    }
    return 0;
}

static int prv_program(void *ctx, uint32_t addr, const uint8_t *src, uint32_t len)
{
    tfa_flash_host_t *fh = ctx;
    if (!prv_range_ok(fh, addr, len) || (src == NULL && len != 0u)) {
        return -TFA_ERR_FLASH_IO;
    }
    if (fh->powered_off) {
        return -TFA_ERR_FLASH_IO;
    }
    uint8_t *cell = fh->mem + addr;
    /* NOR: a bit can only be cleared; checked before anything is written. */
    for (uint32_t i = 0; i < len; i++) {
        if ((uint8_t)(src[i] & (uint8_t)~cell[i]) != 0u) {
            return -TFA_ERR_FLASH_NOT_ERASED;
        }
    }
    int gate = prv_power_gate(fh);
    if (gate < 0) {
        return -TFA_ERR_FLASH_IO;
    }
    uint32_t applied = len;
    if (gate == 0) {
        switch ((tfa_cut_mode_t)fh->cut_mode) {
        case TFA_CUT_NOTHING: applied = 0; break;
        case TFA_CUT_HALF: applied = len / 2u; break;
        case TFA_CUT_COMPLETE: applied = len; break;
        case TFA_CUT_GARBAGE:
        default:
            /* Some of the bits that should clear did, others did not. */
            for (uint32_t i = 0; i < len; i++) {
                cell[i] &= (uint8_t)(src[i] | (uint8_t)prv_rand(fh));
            }
            return -TFA_ERR_FLASH_IO;
        }
    }
    for (uint32_t i = 0; i < applied; i++) {
        cell[i] &= src[i];
    }
    return gate == 0 ? -TFA_ERR_FLASH_IO : 0;
}

static int prv_erase(void *ctx, uint32_t addr)
{
    tfa_flash_host_t *fh = ctx;
    uint32_t sector = fh->flash.sector_size;
    if ((addr & (sector - 1u)) != 0u || !prv_range_ok(fh, addr, sector)) {
        return -TFA_ERR_FLASH_IO;
    }
    int gate = prv_power_gate(fh);
    if (gate < 0) {
        return -TFA_ERR_FLASH_IO;
    }
    uint8_t *cell = fh->mem + addr;
    if (gate == 1 || fh->cut_mode == TFA_CUT_COMPLETE) {
        memset(cell, 0xFF, sector);
    } else if (fh->cut_mode == TFA_CUT_HALF) {
        memset(cell, 0xFF, sector / 2u);
    } else if (fh->cut_mode == TFA_CUT_GARBAGE) {
        for (uint32_t i = 0; i < sector; i++) {
            cell[i] = (uint8_t)prv_rand(fh);
        }
    }
    return gate == 0 ? -TFA_ERR_FLASH_IO : 0;
}

int tfa_flash_host_init(tfa_flash_host_t *fh, uint8_t *buf, uint32_t size, uint32_t sector_size)
{
    memset(fh, 0, sizeof(*fh));
    if (sector_size < 16u || (sector_size & (sector_size - 1u)) != 0u || size == 0u ||
        size % sector_size != 0u) {
        return -TFA_ERR_FLASH_IO;
    }
    if (buf == NULL) {
        /* Sector alignment so that slot starts (sector aligned) are aligned for the flatbuffer reader. */
        buf = aligned_alloc(sector_size, size);
        if (buf == NULL) {
            return -TFA_ERR_FLASH_IO;
        }
        memset(buf, 0xFF, size);
        fh->owns_mem = 1;
    }
    fh->mem = buf;
    fh->rng = 0x9E3779B9u;
    fh->flash.ctx = fh;
    fh->flash.size = size;
    fh->flash.sector_size = sector_size;
    fh->flash.mapped = buf;
    fh->flash.read = prv_read;
    fh->flash.program = prv_program;
    fh->flash.erase = prv_erase;
    return 0;
}

void tfa_flash_host_free(tfa_flash_host_t *fh)
{
    if (fh->owns_mem) {
        free(fh->mem);
    }
    memset(fh, 0, sizeof(*fh));
}

void tfa_flash_host_cut_after(tfa_flash_host_t *fh, uint32_t n, tfa_cut_mode_t mode, uint32_t seed)
{
    fh->cut_at = fh->op_count + (n == 0u ? 1u : n);
    fh->cut_mode = (uint8_t)mode;
    fh->rng = seed != 0u ? seed : 0x9E3779B9u;
}

void tfa_flash_host_power_on(tfa_flash_host_t *fh)
{
    fh->powered_off = 0;
    fh->cut_at = 0;
}

uint32_t tfa_flash_host_op_count(const tfa_flash_host_t *fh)
{
    return fh->op_count;
}

int tfa_flash_host_is_off(const tfa_flash_host_t *fh)
{
    return fh->powered_off;
}
