/* The device runtime: trust anchor that decides which model is installed and run.
 * Caller-owned state (no malloc): the caller allocates tfa_runtime_t and a flash, calls
 * tfa_runtime_boot() at every power-up, then drives installs through the functions below (directly, or
 * through the frame handler in tfa/proto.h). All functions return 0 or -TFA_ERR_x (tfa/errors.h).
 *
 * Flash layout (offsets from the start of the flash, all sector aligned):
 *   [0, 2 sectors)               state area: two copies, each one sector (sequence number + CRC32)
 *   [2 sectors, +slot_size)      slot 0
 *   [.., +slot_size)             slot 1
 * Each slot holds the 292-byte manifest in its first sector-aligned header region followed by the model,
 * see docs/PROTOCOL.md. */
#ifndef TFA_RUNTIME_H
#define TFA_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#include "tfa/flash.h"
#include "tfa/manifest.h"

#define TFA_RUNTIME_VERSION ((0u << 16) | (1u << 8) | 0u) /* 0.1.0 */

typedef struct tfa_trusted_key {
    uint8_t key_id[8];
    uint8_t public_key[32];
} tfa_trusted_key_t;

typedef struct tfa_device_config {
    uint32_t hardware_class;
    uint32_t runtime_version;        /* normally TFA_RUNTIME_VERSION */
    uint32_t ram_budget;             /* largest tensor arena the device can give a model */
    uint32_t slot_size;              /* bytes per slot, multiple of the sector size */
    const tfa_trusted_key_t *keys;
    uint32_t key_count;
    uint8_t max_trial_boots;         /* reboots allowed in trial before an automatic revert (0: first) */
    /* Trial self-test beyond the integrity re-check, or NULL for integrity only. The inference engine
     * plugs in here: run the manifest's self-test input and compare the output digest. Returns 0 or
     * -TFA_ERR_x. model points at the active slot's model bytes (memory-mapped flash). */
    int (*selftest_hook)(void *ctx, const tfa_manifest_t *manifest, const uint8_t *model,
                         uint32_t model_len);
    void *selftest_ctx;
} tfa_device_config_t;

/* What the device reports (hello/state message, MQTT reported state). */
typedef enum {
    TFA_PHASE_IDLE = 0,        /* a confirmed model (or none) is active, no install under way */
    TFA_PHASE_DOWNLOADING = 1, /* install begun, chunks arriving */
    TFA_PHASE_DOWNLOADED = 2,  /* payload complete and verified, not yet activated */
    TFA_PHASE_TRIAL = 3        /* new model active on trial, waiting for confirm */
} tfa_phase_t;

typedef struct tfa_slot_info {
    uint8_t valid;             /* 1 if the slot holds a complete, verified model */
    tfa_manifest_t manifest;   /* meaningful when valid */
} tfa_slot_info_t;

typedef struct tfa_status {
    uint8_t phase;             /* tfa_phase_t */
    uint8_t active_slot;       /* 0 or 1; 0xFF if no model */
    uint8_t boot_attempts;     /* trial boots so far */
    uint8_t last_error;        /* positive tfa_err_t of the last failed operation, 0 if none */
    uint32_t security_floor;
    uint32_t download_offset;  /* payload bytes received so far (resume point) */
    uint32_t download_size;
    tfa_slot_info_t slots[2];
} tfa_status_t;

/* Opaque-by-convention runtime state; sized so that the caller can allocate it statically.
 * Its fields belong to runtime.c. */
typedef struct tfa_runtime {
    const tfa_flash_t *flash;
    const tfa_device_config_t *config;
    uint8_t opaque[1024];
} tfa_runtime_t;

int tfa_runtime_boot(tfa_runtime_t *rt, const tfa_flash_t *flash, const tfa_device_config_t *config);
int tfa_runtime_status(const tfa_runtime_t *rt, tfa_status_t *out);

/* Install: begin takes the whole manifest and refuses before any payload is accepted. */
int tfa_install_begin(tfa_runtime_t *rt, const uint8_t *manifest, uint32_t len);
int tfa_install_chunk(tfa_runtime_t *rt, uint32_t offset, const uint8_t *data, uint32_t len);
int tfa_install_end(tfa_runtime_t *rt);
/* Make the downloaded model active on trial (the next boot also counts as a trial boot). */
int tfa_activate(tfa_runtime_t *rt);
/* Run the trial self-test; on failure the runtime reverts to the previous model. */
int tfa_selftest(tfa_runtime_t *rt);
/* Confirm the trial model; the security floor rises only here. */
int tfa_confirm(tfa_runtime_t *rt);
/* Return to the model in the other slot, without any download. */
int tfa_revert(tfa_runtime_t *rt);

/* Pointer to the active model bytes if the flash is memory-mapped, with its length; NULL otherwise. */
const uint8_t *tfa_active_model(const tfa_runtime_t *rt, uint32_t *len);

#endif
