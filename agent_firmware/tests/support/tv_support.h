/* Test support for the runtime tests: golden vector files (tests/vectors at the repository root) and a
 * simulated device (RAM flash + device config of tests/vectors/device.txt + runtime). Prefix tv_. */
#ifndef TV_SUPPORT_H
#define TV_SUPPORT_H

#include <stdint.h>
#include <stdio.h>

#include "check.h"
#include "flash_host.h"
#include "tfa/errors.h"
#include "tfa/runtime.h"

/* Directory of the golden vectors: $TFA_VECTOR_DIR or ../../tests/vectors (cwd agent_firmware/tests). */
const char *tv_vector_dir(void);
/* Whole file from the vector directory (malloc'ed, free() it), or NULL. An empty file gives a 1-byte
 * allocation and *len = 0. */
uint8_t *tv_read_vector(const char *name, uint32_t *len);

typedef struct tv_index_entry {
    char file[96];
    int code;        /* positive tfa_err_t expected, 0 for OK */
    char layer[16];  /* none, parse, policy, selftest */
} tv_index_entry_t;

/* Parse index.txt into out (cap entries). Returns the number of entries or -1. */
int tv_load_index(tv_index_entry_t *out, int cap);

/* key_trusted.pub: the public key, and key_id = the first 8 bytes of its SHA-256. Returns 0 or -1. */
int tv_load_trusted_key(tfa_trusted_key_t *key);

/* A simulated device: keep it at a stable address (rt points at cfg and fh.flash). */
typedef struct tv_device {
    tfa_flash_host_t fh;
    tfa_device_config_t cfg;
    tfa_trusted_key_t key;
    tfa_runtime_t rt;
    tfa_model_ram_t model_ram;       /* a slot's capacity: where a model encrypted at rest is run from */
    uint32_t sector_size;
    uint32_t expect_floor;           /* device.txt security_floor (after the setup package) */
    uint32_t expect_active_sequence; /* device.txt active_sequence */
} tv_device_t;

/* Config from device.txt and key_trusted.pub; a fresh erased flash of sector_size (0: device.txt's).
 * Does not boot. Returns 0 or -1. */
int tv_device_init(tv_device_t *d, uint32_t sector_size);
void tv_device_free(tv_device_t *d);
/* Power cycle: tfa_runtime_boot on the same flash. */
int tv_device_boot(tv_device_t *d);

/* begin + all payload chunks (chunk bytes each) + end; returns the first error (0 if none). */
int tv_download(tfa_runtime_t *rt, const uint8_t *pkg, uint32_t len, uint32_t chunk);
/* tv_download + activate + selftest + confirm. */
int tv_install_confirm(tfa_runtime_t *rt, const uint8_t *pkg, uint32_t len, uint32_t chunk);
/* Same with a vector file name. */
int tv_install_vector(tfa_runtime_t *rt, const char *name, uint32_t chunk);

/* Independent check of the active model: manifest re-read from flash authenticates and equals the
 * runtime's, model bytes (via flash.mapped) hash to model_sha256. Returns 0 or -TFA_ERR_x; *sequence
 * gets the active model's sequence. */
int tv_check_active_model(const tv_device_t *d, uint32_t *sequence);
/* 1 when some 32-byte window of clear[0..len) occurs anywhere in the device's flash (a dump shows the
 * model), else 0 (also for len < 32). Only windows of at least 8 distinct byte values count: runs of
 * padding (32 zero bytes) are in every flatbuffer and in the manifest too, and are not model content. */
int tv_flash_shows(const tv_device_t *d, const uint8_t *clear, uint32_t len);

#endif
