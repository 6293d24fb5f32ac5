/* The device runtime: trust anchor that decides which model is installed and run.
 * Caller-owned state (no malloc): the caller allocates tfa_runtime_t and a flash, calls
 * tfa_runtime_boot() at every power-up, then drives installs through the functions below (directly, or
 * through the frame handler in tfa/proto.h). All functions return 0 or -TFA_ERR_x (tfa/errors.h).
 *
 * Flash layout (offsets from the start of the flash, all sector aligned; docs/PROTOCOL.md section 1.4):
 *   [0, 2 sectors)               state area: a two-sector record log (tfa/state.h)
 *   [2 sectors, +slot_size)      slot 0
 *   [.., +slot_size)             slot 1
 * Each slot holds the 292-byte manifest at its start and the model at TFA_SLOT_MODEL_OFFSET (16-byte
 * aligned, so the flatbuffer can be read in place through flash->mapped). The model of an encrypted
 * package is kept encrypted there under the device's storage key (PROTOCOL 6.6, tfa/install_crypt.h) and
 * runs from config->model_ram instead.
 *
 * Install state machine (phase in tfa_status_t):
 *   IDLE --begin--> DOWNLOADING --chunk...--> --end--> DOWNLOADED --activate--> TRIAL
 *   TRIAL --selftest ok, confirm--> IDLE (new model confirmed, security floor raised)
 *   TRIAL --selftest fails / revert / too many trial boots--> IDLE (previous model active again)
 *   IDLE --revert--> IDLE (rollback to the other slot's confirmed model)
 *   DOWNLOADING/DOWNLOADED --abort--> IDLE
 * Every transition is one atomic state record, so a power cut at any point leaves a complete,
 * verified model active (the old or the new one). */
#ifndef TFA_RUNTIME_H
#define TFA_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#include "tfa/chacha20.h"
#include "tfa/delta.h"
#include "tfa/flash.h"
#include "tfa/install_crypt.h"
#include "tfa/key_wrap.h"
#include "tfa/manifest.h"
#include "tfa/sha256.h"
#include "tfa/state.h"

#define TFA_RUNTIME_VERSION ((0u << 16) | (1u << 8) | 0u) /* 0.1.0 */

/* Where the model starts inside a slot: the manifest rounded up to 16 bytes. */
#define TFA_SLOT_MODEL_OFFSET 304u
/* Flash bytes a device needs for a given sector and slot size. */
#define TFA_FLASH_SIZE_FOR(sector_size, slot_size) (2u * (sector_size) + 2u * (slot_size))

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
    /* RAM for the payload decoder (compressed and delta packages, payload_encoding 1 and 2), owned by
     * the caller so that tfa_runtime_t stays small; one per runtime, used only during such a download.
     * NULL: the device installs raw packages only and refuses encodings 1 and 2 at begin with
     * -TFA_ERR_FIELD_RANGE (after every other check passed). */
    tfa_delta_t *delta_workspace;
    /* Encrypted packages (docs/PROTOCOL.md section 6): the device's X25519 key pair, 32 bytes each,
     * caller-owned like the trust store (the public key is tfa_x25519_base of the private one, computed
     * once by the caller). NULL: the device has no key and refuses an encrypted package at begin with
     * -TFA_ERR_KEY_UNWRAP (after every other check passed). */
    const uint8_t *encryption_private;
    const uint8_t *encryption_public;
    /* 1: a clear package (flags bit 0 unset) is refused at begin with -TFA_ERR_NOT_ENCRYPTED. */
    uint8_t require_encryption;
    /* The model of an encrypted package stays encrypted in its slot (PROTOCOL 6.6); the self-test hook and
     * tfa_active_model() get it decrypted into this RAM (at least the model's size), NULL: they get NULL
     * for such a model (the integrity re-check still runs, through the key stream). */
    tfa_model_ram_t *model_ram;
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
    tfa_slot_info_t slots[2];  /* the download target's manifest is filled too, with valid = 0 */
    uint8_t target_slot;       /* slot being downloaded, 0xFF if none */
    uint8_t selftest_passed;   /* 1 once tfa_selftest() passed in the current trial since boot */
} tfa_status_t;

/* Runtime state, allocated by the caller (statically on a device). Every field belongs to runtime*.c:
 * read the state through tfa_runtime_status(). About 920 bytes (the cipher and ciphertext hash of an
 * encrypted download take about 260 of them). */
typedef struct tfa_runtime {
    const tfa_flash_t *flash;
    const tfa_device_config_t *config;
    tfa_state_t state;                /* the newest persisted record, as applied */
    tfa_state_log_t log;
    tfa_manifest_t slot_manifest[2];  /* authenticated manifest of each slot, see slot_known */
    uint8_t slot_known;               /* bit i: slot_manifest[i] was read from slot i and authenticated */
    uint8_t selftest_passed;
    uint8_t booted;
    /* 1 while config->delta_workspace decodes the current (compressed or delta) download; received is
     * then the payload offset the next chunk must have. The state record keeps only the last block
     * boundary (its download_offset), which is where a download resumes after a reboot. */
    uint8_t decoding;
    uint32_t received;
#ifndef TFA_NO_ENCRYPTION
    /* Encrypted download: key stream and ciphertext digest; the at-rest view of the flash
     * (tfa/install_crypt.h). */
    tfa_install_crypt_t crypt;
    tfa_rest_view_t rest;
#endif
} tfa_runtime_t;

/* Boot: load the state log (an empty state area is a fresh device; one holding data but no valid record
 * boots fresh with last_error STATE_CORRUPT), re-authenticate the slots' manifests, resume a download,
 * count a trial boot and revert when it exceeds config->max_trial_boots. flash and config must outlive rt.
 * Returns 0, or -TFA_ERR_FLASH_IO (flash failure, or a flash too small for the config's layout). */
int tfa_runtime_boot(tfa_runtime_t *rt, const tfa_flash_t *flash, const tfa_device_config_t *config);
int tfa_runtime_status(const tfa_runtime_t *rt, tfa_status_t *out);

/* Install: begin takes the manifest (len >= 292; bytes after it are ignored), authenticates it and
 * applies the policy (hardware class, runtime version, security floor, sequence, sizes, arena, delta
 * base) before any payload byte is accepted, then erases the inactive slot and writes the manifest.
 * Compressed and delta payloads (encodings 1, 2) need config->delta_workspace (else -TFA_ERR_FIELD_RANGE
 * after all policy checks passed); a delta applies to the active model (-TFA_ERR_WRONG_BASE unless its
 * digest is delta_base_sha256), which is never written. Allowed in IDLE, DOWNLOADING and DOWNLOADED
 * (a new begin abandons the previous download); the same manifest again while DOWNLOADING resumes
 * (returns 0, nothing erased; tfa_runtime_status() gives the resume offset). Not allowed in TRIAL. */
int tfa_install_begin(tfa_runtime_t *rt, const uint8_t *manifest, uint32_t len);
/* offset is a payload offset (package offset - 292) and must equal status.download_offset, else
 * -TFA_ERR_BAD_OFFSET. A download survives disconnects and reboots: continue at the resume offset.
 * Encodings 1 and 2 are decoded into the target slot as they arrive: a malformed stream drops the
 * download (-TFA_ERR_DELTA_CORRUPT, phase IDLE); any other failure rewinds status.download_offset to the
 * last recorded block boundary, from where the agent sends again. After a reboot such a download
 * resumes at that boundary (it can be below the bytes sent before the reboot). */
int tfa_install_chunk(tfa_runtime_t *rt, uint32_t offset, const uint8_t *data, uint32_t len);
/* Encrypted package (flags bit 0): the 80-byte content key wrap (PROTOCOL 6.3) for the download under
 * way, after tfa_install_begin() and before any chunk; chunks of an encrypted download are refused with
 * -TFA_ERR_BAD_STATE until a wrap opened. The key lives in RAM only: after a reboot (or any new begin)
 * the agent sends begin (resume) and the wrap again, then continues at status.download_offset. The wrap
 * is checked against the manifest written in the target slot: -TFA_ERR_KEY_UNWRAP if it does not open
 * (the download is kept, a good wrap may follow); -TFA_ERR_BAD_STATE if no encrypted download is under
 * way. Chunks are decrypted as they arrive (then decoded for encodings 1 and 2); install_end checks
 * payload_sha256 over the ciphertext when the whole payload arrived in order since the wrap, and always
 * model_sha256 over the written model. Firmware built with TFA_NO_ENCRYPTION (the default Cortex-M4
 * build, to stay within its flash budget) has no tfa_install_key and refuses encrypted packages at begin
 * with -TFA_ERR_FIELD_RANGE. */
#ifndef TFA_NO_ENCRYPTION
int tfa_install_key(tfa_runtime_t *rt, const uint8_t wrap[TFA_KEY_WRAP_SIZE]);
#endif
/* All payload received: re-hash the model from flash; on a mismatch the download is dropped
 * (-TFA_ERR_DIGEST_MISMATCH, phase IDLE). For encodings 1 and 2 the decoder must have produced exactly
 * model_size bytes first (else -TFA_ERR_DELTA_CORRUPT, dropped); their payload_sha256 is not checked on
 * the device: the signed model_sha256, checked from flash, decides. Returns 0 again when DOWNLOADED. */
int tfa_install_end(tfa_runtime_t *rt);
/* Drop the current download (DOWNLOADING or DOWNLOADED); 0 in IDLE, -TFA_ERR_BAD_STATE in TRIAL. */
int tfa_install_abort(tfa_runtime_t *rt);
/* Make the downloaded model active on trial (the next boot also counts as a trial boot). */
int tfa_activate(tfa_runtime_t *rt);
/* Integrity re-check of the active model (manifest re-authenticated and model re-hashed from flash),
 * then config->selftest_hook if set. In TRIAL a failure reverts to the previous model (the trial slot is
 * invalidated) and returns the failure code; outside TRIAL it only reports. */
int tfa_selftest(tfa_runtime_t *rt);
/* Confirm the trial model; needs a passed tfa_selftest() since activation or boot
 * (-TFA_ERR_BAD_STATE otherwise). The security floor rises only here. */
int tfa_confirm(tfa_runtime_t *rt);
/* Return to the model in the other slot, without any download (-TFA_ERR_NO_PREVIOUS if that slot is not
 * valid). In TRIAL it abandons the trial (the trial slot is invalidated); in IDLE it is a rollback to the
 * previously confirmed model, refused with -TFA_ERR_ROLLBACK_REFUSED if that model's security counter is
 * below the floor. -TFA_ERR_BAD_STATE while downloading. */
int tfa_revert(tfa_runtime_t *rt);

/* Pointer to the active model bytes, with its length: in place if the flash is memory-mapped, or, for a
 * model encrypted at rest, decrypted into config->model_ram (checked against model_sha256); NULL when
 * neither is possible. */
const uint8_t *tfa_active_model(const tfa_runtime_t *rt, uint32_t *len);
/* The active model's manifest, or NULL if no model is active. */
const tfa_manifest_t *tfa_active_manifest(const tfa_runtime_t *rt);
/* Flash address of a slot (0 or 1) for the current config; its model is at + TFA_SLOT_MODEL_OFFSET. */
uint32_t tfa_slot_address(const tfa_runtime_t *rt, uint8_t slot);

#endif
