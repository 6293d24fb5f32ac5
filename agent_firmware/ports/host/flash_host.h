/* Host port flash: a RAM NOR flash with a power-cut injector.
 *
 * NOR rules are enforced: erase() sets a whole sector to 0xFF, program() may only clear bits (1 -> 0)
 * and answers -TFA_ERR_FLASH_NOT_ERASED, changing nothing, when asked to set a 0 bit back to 1.
 *
 * Power-cut injector: every program() and erase() call is one operation. Armed with
 * tfa_flash_host_cut_after(fh, n, mode), the n-th operation from now is torn according to mode and fails
 * with -TFA_ERR_FLASH_IO, and so does every later operation (power is gone) until
 * tfa_flash_host_power_on(); the contents persist across it, as on a real device.
 * Ports may allocate: tfa_flash_host_init() mallocs the storage when buf is NULL. */
#ifndef TFA_FLASH_HOST_H
#define TFA_FLASH_HOST_H

#include <stdint.h>

#include "tfa/flash.h"

/* What happens to the operation during which the power goes. */
typedef enum {
    TFA_CUT_NOTHING = 0,  /* the torn operation changes nothing */
    TFA_CUT_HALF = 1,     /* program: the first half of the bytes land; erase: the first half of the sector */
    TFA_CUT_GARBAGE = 2,  /* program: random subset of the bits to clear; erase: the sector is noise */
    TFA_CUT_COMPLETE = 3  /* the operation completes, then the power goes (its caller sees an error) */
} tfa_cut_mode_t;

typedef struct tfa_flash_host {
    tfa_flash_t flash;      /* hand &fh->flash to the runtime; flash.ctx points back here */
    uint8_t *mem;
    uint8_t owns_mem;
    uint8_t powered_off;    /* 1 once the cut happened: every operation fails */
    uint8_t cut_mode;       /* tfa_cut_mode_t */
    uint32_t cut_at;        /* operation count at which the power goes; 0 = not armed */
    uint32_t op_count;      /* program + erase operations since init (not reset by power_on) */
    uint32_t rng;           /* xorshift32 state for TFA_CUT_GARBAGE */
} tfa_flash_host_t;

/* size and sector_size: sector_size a power of two >= 16, size a multiple of it. buf: caller storage of
 * size bytes (its contents are kept: a "previous" flash image), or NULL to allocate an erased flash.
 * Returns 0 or -TFA_ERR_FLASH_IO (bad geometry or out of memory). */
int tfa_flash_host_init(tfa_flash_host_t *fh, uint8_t *buf, uint32_t size, uint32_t sector_size);
void tfa_flash_host_free(tfa_flash_host_t *fh);

/* Arm the power-cut: the n-th operation from now (n >= 1) is torn per mode. seed drives GARBAGE. */
void tfa_flash_host_cut_after(tfa_flash_host_t *fh, uint32_t n, tfa_cut_mode_t mode, uint32_t seed);
/* Power comes back: the injector is disarmed, operations work again, the contents are kept. */
void tfa_flash_host_power_on(tfa_flash_host_t *fh);
/* Program + erase operations counted since init. */
uint32_t tfa_flash_host_op_count(const tfa_flash_host_t *fh);
/* 1 if an armed cut has happened and power_on() has not been called since. */
int tfa_flash_host_is_off(const tfa_flash_host_t *fh);

#endif
