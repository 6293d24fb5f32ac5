/* Power-safe persistent state of the runtime (docs/PROTOCOL.md section 1.4).
 *
 * The state area is two flash sectors used as a log: fixed-size records (sequence number + CRC32 each)
 * are appended to the current sector; at load the valid record with the highest sequence wins. When the
 * current sector is full, one record with the same content is written to the other sector (erased first
 * if needed) and only then is the full sector erased. A torn write leaves an invalid record (skipped)
 * and the previous record still wins, so every save is atomic. Appending costs one program operation;
 * an erase happens once per sector's worth of records. */
#ifndef TFA_STATE_H
#define TFA_STATE_H

#include <stdint.h>

#include "tfa/flash.h"

#define TFA_STATE_RECORD_SIZE 48u
#define TFA_STATE_DECODER_SIZE 12u /* opaque payload-decoder checkpoint kept in each record */
#define TFA_STATE_MAGIC 0x52534654u /* "TFSR" little-endian */
#define TFA_STATE_NO_SLOT 0xFFu

/* The content of one record. */
typedef struct tfa_state {
    uint8_t active_slot;      /* 0, 1 or TFA_STATE_NO_SLOT */
    uint8_t phase;            /* tfa_phase_t (tfa/runtime.h) */
    uint8_t trial_boots;      /* boots counted in the current trial */
    uint8_t last_error;       /* positive tfa_err_t, 0 if none */
    uint8_t target_slot;      /* slot being downloaded (phase DOWNLOADING/DOWNLOADED), else NO_SLOT */
    uint8_t slot_valid;       /* bit i: slot i holds a complete, verified model */
    uint32_t security_floor;
    uint32_t download_offset; /* payload bytes written and recorded */
    uint32_t download_size;   /* payload bytes expected */
    /* Resume point of a payload decoder (compressed / delta payloads), stored verbatim; all zero for
     * raw payloads. Cleared whenever a download starts or is dropped. */
    uint8_t decoder[TFA_STATE_DECODER_SIZE];
} tfa_state_t;

/* Where the log stands. Lives in the runtime (RAM); rebuilt by tfa_state_load(). */
typedef struct tfa_state_log {
    const tfa_flash_t *flash;
    uint32_t base;            /* flash offset of the state area (2 sectors) */
    uint32_t seq;             /* sequence number of the newest record, 0 if none */
    uint32_t next_index;      /* record index to write next in the current sector */
    uint8_t sector;           /* current sector, 0 or 1 */
} tfa_state_log_t;

/* The state of a device with an empty state area: no model, floor 0. */
void tfa_state_default(tfa_state_t *st);

/* Scan both sectors. Returns 0 with *st the newest valid record (or the default state when there is
 * none), -TFA_ERR_STATE_CORRUPT when the area holds data but no valid record (then *st is the default
 * state and the log is usable: the next save starts over on erased sectors), or -TFA_ERR_FLASH_IO. */
int tfa_state_load(tfa_state_log_t *log, const tfa_flash_t *flash, uint32_t base, tfa_state_t *st);

/* Append st as the newest record (compacting into the other sector when the current one is full).
 * Returns 0 once the record is durable, or -TFA_ERR_x (then the previous record still stands). */
int tfa_state_save(tfa_state_log_t *log, const tfa_state_t *st);

/* Encode / decode one record (exposed for tests). decode returns 0, or -TFA_ERR_STATE_CORRUPT when the
 * magic, version or CRC is wrong. */
void tfa_state_encode(const tfa_state_t *st, uint32_t seq, uint8_t rec[TFA_STATE_RECORD_SIZE]);
int tfa_state_decode(const uint8_t rec[TFA_STATE_RECORD_SIZE], tfa_state_t *st, uint32_t *seq);

#endif
