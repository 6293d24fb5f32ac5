/* Install state machine over the slot layout of tfa/runtime.h and the state log of tfa/state.h.
 * Rule that keeps power cuts harmless: a slot is written only while the state says it is not valid,
 * and it becomes valid (one state record) only after its model was re-hashed from flash.
 * Compressed and delta payloads go through the caller's tfa_delta_t (config->delta_workspace), which
 * writes only the target slot and reads the base from the active slot; its block-boundary checkpoint is
 * kept in the state record so that a reboot resumes at the last recorded boundary.
 * Encrypted packages (PROTOCOL 6): install_crypt.c holds the key stream and the ciphertext digest, and the
 * at-rest view (prv_store) through which every model byte is programmed and read back.
 * Files: runtime.c (this one: state records, decoder checkpoints, boot, status), runtime_install.c
 * (begin, key, chunk, end, abort), runtime_trial.c (activate, self-test, confirm, revert, the active
 * model); what they share is in runtime_internal.h. */
#include <string.h>

#include "le_bytes.h"
#include "runtime_internal.h"

#define PRV_STATE_BASE 0u
#define PRV_HASH_PIECE 256u

uint32_t tfa_slot_address(const tfa_runtime_t *rt, uint8_t slot)
{
    return 2u * rt->flash->sector_size + (uint32_t)slot * rt->config->slot_size;
}

const tfa_manifest_t *tfa_active_manifest(const tfa_runtime_t *rt)
{
    if (rt == NULL || !rt->booted || !prv_slot_ok(rt, rt->state.active_slot)) {
        return NULL;
    }
    return &rt->slot_manifest[rt->state.active_slot];
}

int tfa_rt_fail(tfa_runtime_t *rt, int err)
{
    if (err < 0 && err > -256) {
        rt->state.last_error = (uint8_t)-err;
    }
    return err;
}

int tfa_rt_state_equal(const tfa_state_t *a, const tfa_state_t *b)
{
    return a->active_slot == b->active_slot && a->phase == b->phase && a->trial_boots == b->trial_boots &&
           a->last_error == b->last_error && a->target_slot == b->target_slot &&
           a->slot_valid == b->slot_valid && a->security_floor == b->security_floor &&
           a->download_offset == b->download_offset && a->download_size == b->download_size &&
           memcmp(a->decoder, b->decoder, sizeof(a->decoder)) == 0;
}

/* Persist next as one record; the RAM copy follows only once it is durable. */
int tfa_rt_commit(tfa_runtime_t *rt, const tfa_state_t *next)
{
    int err = tfa_state_save(&rt->log, next);
    if (err != 0) {
        return err;
    }
    rt->state = *next;
    return 0;
}

int tfa_rt_load_manifest(const tfa_runtime_t *rt, uint8_t slot, tfa_manifest_t *out)
{
    uint8_t raw[TFA_MANIFEST_SIZE];
    int err = rt->flash->read(rt->flash->ctx, tfa_slot_address(rt, slot), raw, sizeof(raw));
    if (err != 0) {
        return err;
    }
    return tfa_manifest_parse(raw, sizeof(raw), rt->config->keys, rt->config->key_count, out);
}

/* SHA-256 of a model range read in small pieces (no large stack buffer, works without a mapping), clear
 * bytes through prv_store. */
int tfa_rt_hash_flash(const tfa_runtime_t *rt, uint32_t addr, uint32_t len, uint8_t digest[32])
{
    const tfa_flash_t *store = prv_store(rt);
    uint8_t piece[PRV_HASH_PIECE];
    tfa_sha256_ctx ctx;
    tfa_sha256_init(&ctx);
    while (len > 0u) {
        uint32_t n = len < PRV_HASH_PIECE ? len : PRV_HASH_PIECE;
        int err = store->read(store->ctx, addr, piece, n);
        if (err != 0) {
            return err;
        }
        tfa_sha256_update(&ctx, piece, n);
        addr += n;
        len -= n;
    }
    tfa_sha256_final(&ctx, digest);
    return 0;
}

/* Trial over (failed self-test, too many boots): back to the other slot if it holds a model, and the
 * trial slot is no longer valid so that nothing can switch back to it without a new install. */
void tfa_rt_abandon_trial(tfa_state_t *next, uint8_t error)
{
    uint8_t trial = next->active_slot;
    if (trial < 2u) {
        uint8_t other = (uint8_t)(1u - trial);
        next->slot_valid &= (uint8_t)~prv_bit(trial);
        next->active_slot = (next->slot_valid & prv_bit(other)) != 0u ? other : TFA_STATE_NO_SLOT;
    }
    next->phase = TFA_PHASE_IDLE;
    next->trial_boots = 0;
    next->last_error = error;
}

void tfa_rt_drop_download(tfa_state_t *next)
{
    if (next->target_slot < 2u) {
        next->slot_valid &= (uint8_t)~prv_bit(next->target_slot);
    }
    next->phase = TFA_PHASE_IDLE;
    next->target_slot = TFA_STATE_NO_SLOT;
    next->download_offset = 0;
    next->download_size = 0;
    memset(next->decoder, 0, sizeof(next->decoder));
}

/* ---- payload decoder (encodings 1 and 2) ---- */

/* The record's 12 decoder bytes (PROTOCOL 1.4): in_offset, out_offset, block_log2, move_bits, has_base,
 * valid. All zero before the stream header has been read. */
void tfa_rt_checkpoint_encode(const tfa_delta_checkpoint_t *cp, uint8_t out[TFA_STATE_DECODER_SIZE])
{
    memset(out, 0, TFA_STATE_DECODER_SIZE);
    if (cp->valid) {
        tfa_put_le32(out, cp->in_offset);
        tfa_put_le32(out + 4, cp->out_offset);
        out[8] = cp->block_log2;
        out[9] = cp->move_bits;
        out[10] = cp->has_base;
        out[11] = 1;
    }
}

/* The checkpoint of a recorded download, checked against the record (tfa_delta_resume checks the rest). */
static int prv_checkpoint_decode(const tfa_state_t *st, tfa_delta_checkpoint_t *cp)
{
    static const uint8_t zero[TFA_STATE_DECODER_SIZE];
    const uint8_t *in = st->decoder;
    memset(cp, 0, sizeof(*cp));
    if (in[11] == 0u) {
        return memcmp(in, zero, sizeof(zero)) == 0 && st->download_offset == 0u ? 0 : -TFA_ERR_STATE_CORRUPT;
    }
    cp->in_offset = tfa_get_le32(in);
    cp->out_offset = tfa_get_le32(in + 4);
    cp->block_log2 = in[8];
    cp->move_bits = in[9];
    cp->has_base = in[10];
    cp->valid = 1;
    return in[11] == 1u && cp->in_offset == st->download_offset ? 0 : -TFA_ERR_STATE_CORRUPT;
}

/* (Re)start the decoder of the download st records, at its checkpoint (or the stream start). The base
 * of a delta is the active model, which must still be the one the signed manifest names. */
int tfa_rt_decoder_arm(tfa_runtime_t *rt, const tfa_state_t *st)
{
    uint8_t t = st->target_slot;
    const tfa_manifest_t *m = &rt->slot_manifest[t];
    tfa_delta_t *d = rt->config->delta_workspace;
    rt->decoding = 0;
    if (d == NULL) {
        return -TFA_ERR_FIELD_RANGE;
    }
    uint32_t base_addr = 0;
    uint32_t base_len = 0;
    if (m->payload_encoding == TFA_ENC_DELTA) {
        uint8_t a = st->active_slot;
        if (a >= 2u || (st->slot_valid & prv_bit(a)) == 0u || (rt->slot_known & prv_bit(a)) == 0u ||
            memcmp(rt->slot_manifest[a].model_sha256, m->delta_base_sha256, 32) != 0) {
            return -TFA_ERR_WRONG_BASE;
        }
        base_addr = prv_model_addr(rt, a);
        base_len = rt->slot_manifest[a].model_size;
    }
    tfa_delta_checkpoint_t cp;
    int err = prv_checkpoint_decode(st, &cp);
    if (err == 0) {
        err = tfa_delta_resume(d, prv_store(rt), base_addr, base_len, prv_model_addr(rt, t), m->model_size, &cp);
    }
    if (err != 0) {
        return err == -TFA_ERR_DELTA_CORRUPT ? -TFA_ERR_STATE_CORRUPT : err;
    }
    rt->received = st->download_offset;
    rt->decoding = 1;
    return 0;
}

static int prv_geometry_ok(const tfa_flash_t *flash, const tfa_device_config_t *config)
{
    uint32_t sector = flash->sector_size;
    if (sector == 0u || (sector & (sector - 1u)) != 0u || config->slot_size % sector != 0u ||
        config->slot_size <= TFA_SLOT_MODEL_OFFSET) {
        return 0;
    }
    uint64_t need = 2u * (uint64_t)sector + 2u * (uint64_t)config->slot_size;
    return need <= flash->size;
}

/* Make the loaded state consistent with what the slots really hold. */
static void prv_sanitize(tfa_runtime_t *rt, tfa_state_t *next)
{
    for (uint8_t s = 0; s < 2u; s++) {
        if ((rt->slot_known & prv_bit(s)) == 0u) {
            next->slot_valid &= (uint8_t)~prv_bit(s);
        }
    }
    if (next->phase == TFA_PHASE_DOWNLOADING || next->phase == TFA_PHASE_DOWNLOADED) {
        uint8_t t = next->target_slot;
        int ok = t < 2u && t != next->active_slot && (rt->slot_known & prv_bit(t)) != 0u &&
                 next->download_size == rt->slot_manifest[t].payload_size &&
                 next->download_offset <= next->download_size;
        if (ok && next->phase == TFA_PHASE_DOWNLOADED) {
            ok = (next->slot_valid & prv_bit(t)) != 0u && next->download_offset == next->download_size;
        }
        if (!ok) {
            tfa_rt_drop_download(next);
        }
    } else {
        next->target_slot = TFA_STATE_NO_SLOT;
    }
    if (next->active_slot != TFA_STATE_NO_SLOT && (next->slot_valid & prv_bit(next->active_slot)) == 0u) {
        /* The active model cannot be trusted any more: fall back to the other one if allowed. */
        uint8_t other = (uint8_t)(1u - next->active_slot);
        int other_ok = (next->slot_valid & prv_bit(other)) != 0u &&
                       rt->slot_manifest[other].security_counter >= next->security_floor;
        next->active_slot = other_ok ? other : TFA_STATE_NO_SLOT;
        if (next->phase == TFA_PHASE_TRIAL) {
            next->phase = TFA_PHASE_IDLE;
            next->trial_boots = 0;
        }
        next->last_error = TFA_ERR_STATE_CORRUPT;
    }
}

int tfa_runtime_boot(tfa_runtime_t *rt, const tfa_flash_t *flash, const tfa_device_config_t *config)
{
    if (rt == NULL || flash == NULL || config == NULL) {
        return -TFA_ERR_BAD_STATE;
    }
    memset(rt, 0, sizeof(*rt));
    rt->flash = flash;
    rt->config = config;
    if (!prv_geometry_ok(flash, config)) {
        return -TFA_ERR_FLASH_IO;
    }
#ifndef TFA_NO_ENCRYPTION
    tfa_rest_init(&rt->rest, flash, rt->slot_manifest, prv_model_addr(rt, 0), prv_model_addr(rt, 1),
                  config->encryption_private, config->encryption_public);
#endif
    tfa_state_t loaded;
    int err = tfa_state_load(&rt->log, flash, PRV_STATE_BASE, &loaded);
    int corrupt = err == -TFA_ERR_STATE_CORRUPT;
    if (err != 0 && !corrupt) {
        return err;
    }
    rt->state = loaded;
    for (uint8_t s = 0; s < 2u; s++) {
        int needed = (loaded.slot_valid & prv_bit(s)) != 0u ||
                     (loaded.target_slot == s &&
                      (loaded.phase == TFA_PHASE_DOWNLOADING || loaded.phase == TFA_PHASE_DOWNLOADED));
        if (needed && tfa_rt_load_manifest(rt, s, &rt->slot_manifest[s]) == 0) {
            rt->slot_known |= prv_bit(s);
        }
    }
    tfa_state_t next = loaded;
    prv_sanitize(rt, &next);
    if (next.phase == TFA_PHASE_TRIAL) {
        if (next.trial_boots < 0xFFu) {
            next.trial_boots++;
        }
        if (next.trial_boots > config->max_trial_boots) {
            /* Never confirmed within the allowed boots: treat as a failed self-test. */
            tfa_rt_abandon_trial(&next, TFA_ERR_SELFTEST_FAILED);
        }
    }
    if (corrupt) {
        next.last_error = TFA_ERR_STATE_CORRUPT;
    }
    if (next.phase == TFA_PHASE_DOWNLOADING && prv_decoded(rt, next.target_slot)) {
        /* Resume decoding at the recorded block boundary, or give the download up. */
        err = tfa_rt_decoder_arm(rt, &next);
        if (err != 0) {
            tfa_rt_drop_download(&next);
            next.last_error = (uint8_t)-err;
        }
    }
    if (corrupt || !tfa_rt_state_equal(&next, &loaded)) {
        err = tfa_rt_commit(rt, &next);
        if (err != 0) {
            return err;
        }
    }
    rt->booted = 1;
    return 0;
}

int tfa_runtime_status(const tfa_runtime_t *rt, tfa_status_t *out)
{
    if (rt == NULL || out == NULL) {
        return -TFA_ERR_BAD_STATE;
    }
    memset(out, 0, sizeof(*out));
    out->phase = rt->state.phase;
    out->active_slot = prv_slot_ok(rt, rt->state.active_slot) ? rt->state.active_slot : 0xFFu;
    out->boot_attempts = rt->state.trial_boots;
    out->last_error = rt->state.last_error;
    out->security_floor = rt->state.security_floor;
    out->download_offset = rt->decoding ? rt->received : rt->state.download_offset;
    out->download_size = rt->state.download_size;
    out->target_slot = rt->state.target_slot;
    out->selftest_passed = rt->selftest_passed;
    for (uint8_t s = 0; s < 2u; s++) {
        out->slots[s].valid = (uint8_t)prv_slot_ok(rt, s);
        if ((rt->slot_known & prv_bit(s)) != 0u) {
            out->slots[s].manifest = rt->slot_manifest[s];
        }
    }
    return rt->booted ? 0 : -TFA_ERR_BAD_STATE;
}
