#include "tfa/state.h"

#include <string.h>

#include "le_bytes.h"
#include "tfa/crc32.h"
#include "tfa/errors.h"
#include "tfa/runtime.h"

#define PRV_RECORD_VERSION 1u
#define PRV_CRC_OFFSET (TFA_STATE_RECORD_SIZE - 4u)
/* 28 bytes of fields, the decoder checkpoint, 4 reserved zero bytes, the CRC. */
_Static_assert(28u + TFA_STATE_DECODER_SIZE + 4u == PRV_CRC_OFFSET, "state record layout");

static int prv_slot_id_ok(uint8_t slot)
{
    return slot == 0u || slot == 1u || slot == TFA_STATE_NO_SLOT;
}

void tfa_state_default(tfa_state_t *st)
{
    memset(st, 0, sizeof(*st));
    st->active_slot = TFA_STATE_NO_SLOT;
    st->target_slot = TFA_STATE_NO_SLOT;
    st->phase = TFA_PHASE_IDLE;
}

void tfa_state_encode(const tfa_state_t *st, uint32_t seq, uint8_t rec[TFA_STATE_RECORD_SIZE])
{
    tfa_put_le32(rec + 0, TFA_STATE_MAGIC);
    tfa_put_le32(rec + 4, seq);
    rec[8] = PRV_RECORD_VERSION;
    rec[9] = st->active_slot;
    rec[10] = st->phase;
    rec[11] = st->trial_boots;
    rec[12] = st->last_error;
    rec[13] = st->target_slot;
    rec[14] = st->slot_valid;
    rec[15] = 0;
    tfa_put_le32(rec + 16, st->security_floor);
    tfa_put_le32(rec + 20, st->download_offset);
    tfa_put_le32(rec + 24, st->download_size);
    memcpy(rec + 28, st->decoder, TFA_STATE_DECODER_SIZE);
    memset(rec + 28 + TFA_STATE_DECODER_SIZE, 0, PRV_CRC_OFFSET - 28u - TFA_STATE_DECODER_SIZE);
    tfa_put_le32(rec + PRV_CRC_OFFSET, tfa_crc32(0, rec, PRV_CRC_OFFSET));
}

int tfa_state_decode(const uint8_t rec[TFA_STATE_RECORD_SIZE], tfa_state_t *st, uint32_t *seq)
{
    if (tfa_get_le32(rec) != TFA_STATE_MAGIC || rec[8] != PRV_RECORD_VERSION ||
        tfa_get_le32(rec + PRV_CRC_OFFSET) != tfa_crc32(0, rec, PRV_CRC_OFFSET)) {
        return -TFA_ERR_STATE_CORRUPT;
    }
    /* A record with a good CRC but impossible content was not written by us: treat it as corrupt. */
    if (!prv_slot_id_ok(rec[9]) || rec[10] > TFA_PHASE_TRIAL || !prv_slot_id_ok(rec[13]) || rec[14] > 3u ||
        rec[15] != 0u || tfa_get_le32(rec + 28u + TFA_STATE_DECODER_SIZE) != 0u) {
        return -TFA_ERR_STATE_CORRUPT;
    }
    st->active_slot = rec[9];
    st->phase = rec[10];
    st->trial_boots = rec[11];
    st->last_error = rec[12];
    st->target_slot = rec[13];
    st->slot_valid = rec[14];
    st->security_floor = tfa_get_le32(rec + 16);
    st->download_offset = tfa_get_le32(rec + 20);
    st->download_size = tfa_get_le32(rec + 24);
    memcpy(st->decoder, rec + 28, TFA_STATE_DECODER_SIZE);
    *seq = tfa_get_le32(rec + 4);
    return 0;
}

static uint32_t prv_records_per_sector(const tfa_state_log_t *log)
{
    return log->flash->sector_size / TFA_STATE_RECORD_SIZE;
}

static uint32_t prv_record_addr(const tfa_state_log_t *log, uint8_t sector, uint32_t index)
{
    return log->base + (uint32_t)sector * log->flash->sector_size + index * TFA_STATE_RECORD_SIZE;
}

static int prv_is_blank(const uint8_t *p, uint32_t len)
{
    for (uint32_t i = 0; i < len; i++) {
        if (p[i] != 0xFFu) {
            return 0;
        }
    }
    return 1;
}

/* Erase the sector unless it already reads all 0xFF (saves an erase cycle). */
static int prv_ensure_erased(tfa_state_log_t *log, uint8_t sector)
{
    uint8_t piece[TFA_STATE_RECORD_SIZE];
    uint32_t base = prv_record_addr(log, sector, 0);
    uint32_t size = log->flash->sector_size;
    for (uint32_t off = 0; off < size; off += sizeof(piece)) {
        uint32_t n = size - off < sizeof(piece) ? size - off : (uint32_t)sizeof(piece);
        int err = log->flash->read(log->flash->ctx, base + off, piece, n);
        if (err != 0) {
            return err;
        }
        if (!prv_is_blank(piece, n)) {
            return log->flash->erase(log->flash->ctx, base);
        }
    }
    return 0;
}

int tfa_state_load(tfa_state_log_t *log, const tfa_flash_t *flash, uint32_t base, tfa_state_t *st)
{
    memset(log, 0, sizeof(*log));
    log->flash = flash;
    log->base = base;
    tfa_state_default(st);
    if (flash->sector_size < 2u * TFA_STATE_RECORD_SIZE || base % flash->sector_size != 0u ||
        base > flash->size || flash->size - base < 2u * flash->sector_size) {
        return -TFA_ERR_FLASH_IO;
    }
    uint32_t n = prv_records_per_sector(log);
    uint32_t last_used[2] = {0, 0}; /* 1 + index of the last non-blank record, per sector */
    int found = 0;
    int any_data = 0;
    uint8_t rec[TFA_STATE_RECORD_SIZE];
    for (uint8_t s = 0; s < 2u; s++) {
        for (uint32_t i = 0; i < n; i++) {
            int err = flash->read(flash->ctx, prv_record_addr(log, s, i), rec, sizeof(rec));
            if (err != 0) {
                return err;
            }
            if (prv_is_blank(rec, sizeof(rec))) {
                continue;
            }
            any_data = 1;
            last_used[s] = i + 1u;
            tfa_state_t cand;
            uint32_t seq;
            if (tfa_state_decode(rec, &cand, &seq) == 0 && (!found || seq > log->seq)) {
                found = 1;
                *st = cand;
                log->seq = seq;
                log->sector = s;
            }
        }
    }
    if (found) {
        log->next_index = last_used[log->sector];
        return 0;
    }
    if (any_data) {
        /* Make the next save start over: "full" sector 0 compacts into sector 1 (erased first). */
        log->sector = 0;
        log->next_index = n;
        return -TFA_ERR_STATE_CORRUPT;
    }
    return 0;
}

static int prv_compact(tfa_state_log_t *log, const uint8_t rec[TFA_STATE_RECORD_SIZE])
{
    uint8_t old = log->sector;
    uint8_t other = (uint8_t)(1u - old);
    int err = prv_ensure_erased(log, other);
    if (err == 0) {
        err = log->flash->program(log->flash->ctx, prv_record_addr(log, other, 0), rec, TFA_STATE_RECORD_SIZE);
    }
    if (err != 0) {
        return err;
    }
    /* The record is durable in the other sector: switch, then free the old one. Failing to erase is
     * harmless (its records are older); the next compaction erases it before use. */
    log->sector = other;
    log->next_index = 1;
    (void)log->flash->erase(log->flash->ctx, prv_record_addr(log, old, 0));
    return 0;
}

int tfa_state_save(tfa_state_log_t *log, const tfa_state_t *st)
{
    uint8_t rec[TFA_STATE_RECORD_SIZE];
    /* A sequence number is used once even if its write fails: a torn record that still landed must
     * never tie with the record that replaces it. */
    log->seq++;
    tfa_state_encode(st, log->seq, rec);
    uint32_t n = prv_records_per_sector(log);
    int err = -TFA_ERR_FLASH_IO;
    while (log->next_index < n) {
        uint32_t index = log->next_index++;
        err = log->flash->program(log->flash->ctx, prv_record_addr(log, log->sector, index), rec, sizeof(rec));
        if (err != -TFA_ERR_FLASH_NOT_ERASED) {
            break;
        }
        /* Not blank (should not happen): skip that record position. */
    }
    if (log->next_index >= n && err != 0) {
        err = prv_compact(log, rec);
    }
    return err;
}
