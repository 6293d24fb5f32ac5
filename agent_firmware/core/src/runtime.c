/* Install state machine over the slot layout of tfa/runtime.h and the state log of tfa/state.h.
 * Rule that keeps power cuts harmless: a slot is written only while the state says it is not valid,
 * and it becomes valid (one state record) only after its model was re-hashed from flash.
 * Compressed and delta payloads go through the caller's tfa_delta_t (config->delta_workspace), which
 * writes only the target slot and reads the base from the active slot; its block-boundary checkpoint is
 * kept in the state record so that a reboot resumes at the last recorded boundary.
 * Encrypted packages (PROTOCOL 6): install_crypt.c holds the key stream and the ciphertext digest, and the
 * at-rest view (prv_store) through which every model byte is programmed and read back. */
#include "tfa/runtime.h"

#include <string.h>

#include "tfa/errors.h"
#include "tfa/install_crypt.h"

#define PRV_STATE_BASE 0u
#define PRV_HASH_PIECE 256u
#define PRV_CRYPT_PIECE TFA_CRYPT_PIECE /* stack bytes for decrypting a chunk piece by piece */

static uint8_t prv_bit(uint8_t slot)
{
    return (uint8_t)(1u << slot);
}

uint32_t tfa_slot_address(const tfa_runtime_t *rt, uint8_t slot)
{
    return 2u * rt->flash->sector_size + (uint32_t)slot * rt->config->slot_size;
}

static uint32_t prv_model_addr(const tfa_runtime_t *rt, uint8_t slot)
{
    return tfa_slot_address(rt, slot) + TFA_SLOT_MODEL_OFFSET;
}

/* Where model bytes are read and programmed: the at-rest view (PROTOCOL 6.6), which encrypts the model
 * of an encrypted package on its way to flash and decrypts it on the way back; the port's flash as is
 * without decryption. Manifests and the state log always use the port's flash. */
static const tfa_flash_t *prv_store(const tfa_runtime_t *rt)
{
#ifndef TFA_NO_ENCRYPTION
    return &rt->rest.flash;
#else
    return rt->flash;
#endif
}


/* Slot holds a complete verified model whose manifest authenticated at boot or begin. */
static int prv_slot_ok(const tfa_runtime_t *rt, uint8_t slot)
{
    return slot < 2u && (rt->state.slot_valid & prv_bit(slot)) != 0u && (rt->slot_known & prv_bit(slot)) != 0u;
}

const tfa_manifest_t *tfa_active_manifest(const tfa_runtime_t *rt)
{
    if (rt == NULL || !rt->booted || !prv_slot_ok(rt, rt->state.active_slot)) {
        return NULL;
    }
    return &rt->slot_manifest[rt->state.active_slot];
}

static int prv_fail(tfa_runtime_t *rt, int err)
{
    if (err < 0 && err > -256) {
        rt->state.last_error = (uint8_t)-err;
    }
    return err;
}

static int prv_state_equal(const tfa_state_t *a, const tfa_state_t *b)
{
    return a->active_slot == b->active_slot && a->phase == b->phase && a->trial_boots == b->trial_boots &&
           a->last_error == b->last_error && a->target_slot == b->target_slot &&
           a->slot_valid == b->slot_valid && a->security_floor == b->security_floor &&
           a->download_offset == b->download_offset && a->download_size == b->download_size &&
           memcmp(a->decoder, b->decoder, sizeof(a->decoder)) == 0;
}

/* Persist next as one record; the RAM copy follows only once it is durable. */
static int prv_commit(tfa_runtime_t *rt, const tfa_state_t *next)
{
    int err = tfa_state_save(&rt->log, next);
    if (err != 0) {
        return err;
    }
    rt->state = *next;
    return 0;
}

static int prv_load_manifest(const tfa_runtime_t *rt, uint8_t slot, tfa_manifest_t *out)
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
static int prv_hash_flash(const tfa_runtime_t *rt, uint32_t addr, uint32_t len, uint8_t digest[32])
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
static void prv_abandon_trial(tfa_state_t *next, uint8_t error)
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

static void prv_drop_download(tfa_state_t *next)
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

#ifndef TFA_NO_ENCRYPTION
static int prv_encrypted(const tfa_runtime_t *rt, uint8_t slot)
{
    return slot < 2u && (rt->slot_manifest[slot].flags & TFA_MANIFEST_FLAG_ENCRYPTED) != 0u;
}

/* The content key stream is gone (download over or replaced): a new wrap is needed. */
static void prv_forget_key(tfa_runtime_t *rt)
{
    tfa_crypt_forget(&rt->crypt);
}
#else
/* Built without decryption (TFA_NO_ENCRYPTION): encrypted packages are refused at begin. */
static int prv_encrypted(const tfa_runtime_t *rt, uint8_t slot)
{
    (void)rt;
    (void)slot;
    return 0;
}

static void prv_forget_key(tfa_runtime_t *rt)
{
    (void)rt;
}
#endif

/* ---- payload decoder (encodings 1 and 2) ---- */

static void prv_put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint32_t prv_get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The record's 12 decoder bytes (PROTOCOL 1.4): in_offset, out_offset, block_log2, move_bits, has_base,
 * valid. All zero before the stream header has been read. */
static void prv_checkpoint_encode(const tfa_delta_checkpoint_t *cp, uint8_t out[TFA_STATE_DECODER_SIZE])
{
    memset(out, 0, TFA_STATE_DECODER_SIZE);
    if (cp->valid) {
        prv_put_u32(out, cp->in_offset);
        prv_put_u32(out + 4, cp->out_offset);
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
    cp->in_offset = prv_get_u32(in);
    cp->out_offset = prv_get_u32(in + 4);
    cp->block_log2 = in[8];
    cp->move_bits = in[9];
    cp->has_base = in[10];
    cp->valid = 1;
    return in[11] == 1u && cp->in_offset == st->download_offset ? 0 : -TFA_ERR_STATE_CORRUPT;
}

/* (Re)start the decoder of the download st records, at its checkpoint (or the stream start). The base
 * of a delta is the active model, which must still be the one the signed manifest names. */
static int prv_decoder_arm(tfa_runtime_t *rt, const tfa_state_t *st)
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

static int prv_decoded(const tfa_runtime_t *rt, uint8_t slot)
{
    return rt->slot_manifest[slot].payload_encoding != TFA_ENC_RAW;
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
            prv_drop_download(next);
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
        if (needed && prv_load_manifest(rt, s, &rt->slot_manifest[s]) == 0) {
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
            prv_abandon_trial(&next, TFA_ERR_SELFTEST_FAILED);
        }
    }
    if (corrupt) {
        next.last_error = TFA_ERR_STATE_CORRUPT;
    }
    if (next.phase == TFA_PHASE_DOWNLOADING && prv_decoded(rt, next.target_slot)) {
        /* Resume decoding at the recorded block boundary, or give the download up. */
        err = prv_decoder_arm(rt, &next);
        if (err != 0) {
            prv_drop_download(&next);
            next.last_error = (uint8_t)-err;
        }
    }
    if (corrupt || !prv_state_equal(&next, &loaded)) {
        err = prv_commit(rt, &next);
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

/* Policy after authentication, in the order of docs/PROTOCOL.md section 1.1. */
static int prv_policy(const tfa_runtime_t *rt, const tfa_manifest_t *m)
{
    const tfa_device_config_t *cfg = rt->config;
    const tfa_manifest_t *active = tfa_active_manifest(rt);
    uint32_t capacity = cfg->slot_size - TFA_SLOT_MODEL_OFFSET;
    if (m->hardware_class != cfg->hardware_class) {
        return -TFA_ERR_WRONG_HARDWARE;
    }
    if (m->min_runtime_version > cfg->runtime_version) {
        return -TFA_ERR_RUNTIME_TOO_OLD;
    }
    if (m->security_counter < rt->state.security_floor) {
        return -TFA_ERR_ROLLBACK_REFUSED;
    }
    if (active != NULL && m->sequence <= active->sequence) {
        return -TFA_ERR_REPLAYED;
    }
    if (m->model_size > capacity || m->payload_size > capacity) {
        return -TFA_ERR_TOO_LARGE;
    }
    if (m->arena_bytes > cfg->ram_budget) {
        return -TFA_ERR_ARENA_TOO_LARGE;
    }
    if (m->payload_encoding == TFA_ENC_DELTA &&
        (active == NULL || memcmp(m->delta_base_sha256, active->model_sha256, 32) != 0)) {
        return -TFA_ERR_WRONG_BASE;
    }
    /* PROTOCOL 6.5: a device that requires encryption never installs a clear payload, and one without a
     * key refuses an encrypted payload before a byte of it is written. */
    if ((m->flags & TFA_MANIFEST_FLAG_ENCRYPTED) == 0u) {
        if (cfg->require_encryption) {
            return -TFA_ERR_NOT_ENCRYPTED;
        }
    } else {
#ifdef TFA_NO_ENCRYPTION
        return -TFA_ERR_FIELD_RANGE; /* this build has no decryption, as a raw-only device for encodings */
#else
        if (cfg->encryption_private == NULL || cfg->encryption_public == NULL) {
            return -TFA_ERR_KEY_UNWRAP;
        }
#endif
    }
    /* A device built without a decoder workspace installs raw payloads only. */
    if (m->payload_encoding != TFA_ENC_RAW && cfg->delta_workspace == NULL) {
        return -TFA_ERR_FIELD_RANGE;
    }
    return 0;
}

int tfa_install_begin(tfa_runtime_t *rt, const uint8_t *manifest, uint32_t len)
{
    if (rt == NULL || !rt->booted) {
        return -TFA_ERR_BAD_STATE;
    }
    if (rt->state.phase == TFA_PHASE_TRIAL) {
        return prv_fail(rt, -TFA_ERR_BAD_STATE);
    }
    tfa_manifest_t m;
    int err = tfa_manifest_parse(manifest, len, rt->config->keys, rt->config->key_count, &m);
    if (err == 0) {
        err = prv_policy(rt, &m);
    }
    if (err != 0) {
        return prv_fail(rt, err);
    }
    uint8_t t = rt->state.target_slot;
    int same = (rt->state.phase == TFA_PHASE_DOWNLOADING || rt->state.phase == TFA_PHASE_DOWNLOADED) &&
               t < 2u && (rt->slot_known & prv_bit(t)) != 0u &&
               memcmp(&rt->slot_manifest[t], &m, sizeof(m)) == 0;
    if (same) {
        /* resume: status.download_offset says where (a decoder lost to a failure restarts) */
        if (rt->state.phase == TFA_PHASE_DOWNLOADING && prv_decoded(rt, t) && !rt->decoding) {
            err = prv_decoder_arm(rt, &rt->state);
        }
        return err != 0 ? prv_fail(rt, err) : 0;
    }
    rt->decoding = 0;
    prv_forget_key(rt);
    uint8_t target = rt->state.active_slot == 0u ? 1u : 0u;
    /* 1. The slot stops being valid before a single byte of it changes. */
    tfa_state_t next = rt->state;
    prv_drop_download(&next);
    next.slot_valid &= (uint8_t)~prv_bit(target);
    next.last_error = 0;
    if (!prv_state_equal(&next, &rt->state)) {
        err = prv_commit(rt, &next);
        if (err != 0) {
            return prv_fail(rt, err);
        }
    }
    rt->slot_known &= (uint8_t)~prv_bit(target);
    /* 2. Erase what the manifest and model need, 3. write the manifest. */
    uint32_t sector = rt->flash->sector_size;
    uint32_t used = TFA_SLOT_MODEL_OFFSET + m.model_size;
    uint32_t base = tfa_slot_address(rt, target);
    for (uint32_t off = 0; off < used && err == 0; off += sector) {
        err = rt->flash->erase(rt->flash->ctx, base + off);
    }
    if (err == 0) {
        err = rt->flash->program(rt->flash->ctx, base, manifest, TFA_MANIFEST_SIZE);
    }
    if (err != 0) {
        return prv_fail(rt, err);
    }
    /* 4. Downloading from offset 0. */
    next.phase = TFA_PHASE_DOWNLOADING;
    next.target_slot = target;
    next.download_offset = 0;
    next.download_size = m.payload_size;
    err = prv_commit(rt, &next);
    if (err != 0) {
        return prv_fail(rt, err);
    }
    memcpy(&rt->slot_manifest[target], &m, sizeof(m)); /* memcpy: padding too, for memcmp */
    rt->slot_known |= prv_bit(target);
    if (prv_decoded(rt, target)) {
        err = prv_decoder_arm(rt, &rt->state);
    }
    return err != 0 ? prv_fail(rt, err) : 0;
}

/* Give the current download up with code (its slot stays invalid). */
static int prv_drop_failed(tfa_runtime_t *rt, int code)
{
    uint8_t t = rt->state.target_slot;
    tfa_state_t next = rt->state;
    prv_drop_download(&next);
    next.last_error = (uint8_t)-code;
    int err = prv_commit(rt, &next);
    if (t < 2u) {
        rt->slot_known &= (uint8_t)~prv_bit(t);
    }
    rt->decoding = 0;
    prv_forget_key(rt);
    return prv_fail(rt, err != 0 ? err : code);
}

#ifndef TFA_NO_ENCRYPTION
int tfa_install_key(tfa_runtime_t *rt, const uint8_t wrap[TFA_KEY_WRAP_SIZE])
{
    if (rt == NULL || !rt->booted || wrap == NULL) {
        return -TFA_ERR_BAD_STATE;
    }
    uint8_t t = rt->state.target_slot;
    if (rt->state.phase != TFA_PHASE_DOWNLOADING || !prv_encrypted(rt, t)) {
        return prv_fail(rt, -TFA_ERR_BAD_STATE);
    }
    const tfa_device_config_t *cfg = rt->config;
    if (cfg->encryption_private == NULL || cfg->encryption_public == NULL) {
        return prv_fail(rt, -TFA_ERR_KEY_UNWRAP);
    }
    /* The wrap is bound to the signed manifest bytes, read back from the slot begin wrote them to. */
    uint8_t raw[TFA_MANIFEST_SIZE];
    int err = rt->flash->read(rt->flash->ctx, tfa_slot_address(rt, t), raw, sizeof(raw));
    if (err != 0) {
        prv_forget_key(rt);
        return prv_fail(rt, err);
    }
    uint32_t resume = rt->decoding ? rt->received : rt->state.download_offset;
    err = tfa_crypt_open(&rt->crypt, wrap, cfg->encryption_private, cfg->encryption_public, raw, resume);
    return err != 0 ? prv_fail(rt, err) : 0;
}

/* Encrypted download: note the ciphertext for payload_sha256 and move the key stream to offset. */
static int prv_cipher_at(tfa_runtime_t *rt, uint32_t offset, const uint8_t *data, uint32_t len)
{
    return tfa_crypt_at(&rt->crypt, offset, data, len);
}

/* Decrypts the next n bytes of an encrypted chunk into buf, or points at clear data as is. */
static const uint8_t *prv_clear_piece(tfa_runtime_t *rt, int encrypted, const uint8_t *data, uint32_t n,
                                      uint8_t *buf)
{
    return encrypted ? tfa_crypt_piece(&rt->crypt, data, n, buf) : data;
}

/* 0 unless the ciphertext digest could be computed over the whole payload and differs. */
static int prv_ciphertext_check(tfa_runtime_t *rt, uint8_t slot)
{
    if (!prv_encrypted(rt, slot)) {
        return 0;
    }
    return tfa_crypt_check(&rt->crypt, rt->state.download_size, rt->slot_manifest[slot].payload_sha256);
}
#else
static int prv_cipher_at(tfa_runtime_t *rt, uint32_t offset, const uint8_t *data, uint32_t len)
{
    (void)rt;
    (void)offset;
    (void)data;
    (void)len;
    return -TFA_ERR_BAD_STATE;
}

static const uint8_t *prv_clear_piece(tfa_runtime_t *rt, int encrypted, const uint8_t *data, uint32_t n,
                                      uint8_t *buf)
{
    (void)rt;
    (void)encrypted;
    (void)n;
    (void)buf;
    return data;
}

static int prv_ciphertext_check(tfa_runtime_t *rt, uint8_t slot)
{
    (void)rt;
    (void)slot;
    return 0;
}
#endif

/* Encodings 1 and 2: decode into the target slot; record the checkpoint when a block boundary passed.
 * The record is written only then, not per chunk. */
static int prv_chunk_decode(tfa_runtime_t *rt, const uint8_t *data, uint32_t len)
{
    if (!rt->decoding) {
        return prv_fail(rt, -TFA_ERR_BAD_STATE);
    }
    tfa_delta_t *d = rt->config->delta_workspace;
    int encrypted = prv_encrypted(rt, rt->state.target_slot);
    uint8_t buf[PRV_CRYPT_PIECE];
    int err = 0;
    for (uint32_t done = 0; done < len && err == 0;) {
        uint32_t n = len - done;
        n = encrypted && n > PRV_CRYPT_PIECE ? PRV_CRYPT_PIECE : n;
        err = tfa_delta_feed(d, prv_clear_piece(rt, encrypted, data + done, n, buf), n);
        done += n;
    }
    if (err == -TFA_ERR_DELTA_CORRUPT) {
        return prv_drop_failed(rt, err);
    }
    if (err == 0) {
        rt->received += len;
        const tfa_delta_checkpoint_t *cp = tfa_delta_checkpoint(d);
        tfa_state_t next = rt->state;
        prv_checkpoint_encode(cp, next.decoder);
        next.download_offset = cp->valid ? cp->in_offset : 0u;
        if (!prv_state_equal(&next, &rt->state)) {
            err = prv_commit(rt, &next);
        }
    }
    if (err != 0) {
        /* Back to the last durable boundary: the agent sends again from status.download_offset. */
        (void)prv_decoder_arm(rt, &rt->state);
        return prv_fail(rt, err);
    }
    return 0;
}

int tfa_install_chunk(tfa_runtime_t *rt, uint32_t offset, const uint8_t *data, uint32_t len)
{
    if (rt == NULL || !rt->booted) {
        return -TFA_ERR_BAD_STATE;
    }
    const tfa_state_t *st = &rt->state;
    if (st->phase != TFA_PHASE_DOWNLOADING) {
        return prv_fail(rt, -TFA_ERR_BAD_STATE);
    }
    uint32_t expected = rt->decoding ? rt->received : st->download_offset;
    if (offset != expected) {
        return prv_fail(rt, -TFA_ERR_BAD_OFFSET);
    }
    if (len > st->download_size - offset || (data == NULL && len != 0u)) {
        return prv_fail(rt, -TFA_ERR_SIZE_MISMATCH);
    }
    if (len == 0u) {
        return 0;
    }
    int encrypted = prv_encrypted(rt, st->target_slot);
    int err = encrypted ? prv_cipher_at(rt, offset, data, len) : 0;
    if (err != 0) {
        return prv_fail(rt, err);
    }
    if (prv_decoded(rt, st->target_slot)) {
        return prv_chunk_decode(rt, data, len);
    }
    /* RAW payload: payload offset == model offset. */
    const tfa_flash_t *store = prv_store(rt);
    uint8_t buf[PRV_CRYPT_PIECE];
    uint32_t addr = prv_model_addr(rt, st->target_slot) + offset;
    for (uint32_t done = 0; done < len && err == 0;) {
        uint32_t n = len - done;
        n = encrypted && n > PRV_CRYPT_PIECE ? PRV_CRYPT_PIECE : n;
        const uint8_t *clear = prv_clear_piece(rt, encrypted, data + done, n, buf);
        err = store->program(store->ctx, addr + done, clear, n);
        done += n;
    }
    if (err != 0) {
        return prv_fail(rt, err);
    }
    tfa_state_t next = *st;
    next.download_offset = offset + len;
    err = prv_commit(rt, &next);
    return err != 0 ? prv_fail(rt, err) : 0;
}

int tfa_install_end(tfa_runtime_t *rt)
{
    if (rt == NULL || !rt->booted) {
        return -TFA_ERR_BAD_STATE;
    }
    if (rt->state.phase == TFA_PHASE_DOWNLOADED) {
        return 0;
    }
    if (rt->state.phase != TFA_PHASE_DOWNLOADING) {
        return prv_fail(rt, -TFA_ERR_BAD_STATE);
    }
    uint32_t received = rt->decoding ? rt->received : rt->state.download_offset;
    if (received != rt->state.download_size) {
        return prv_fail(rt, -TFA_ERR_SIZE_MISMATCH);
    }
    uint8_t t = rt->state.target_slot;
    const tfa_manifest_t *m = &rt->slot_manifest[t];
    int err = 0;
    if (prv_decoded(rt, t)) {
        /* The stream must have produced exactly model_size bytes; the model digest then decides. */
        err = rt->decoding ? tfa_delta_finish(rt->config->delta_workspace) : -TFA_ERR_BAD_STATE;
        if (err == -TFA_ERR_DELTA_CORRUPT) {
            return prv_drop_failed(rt, err);
        }
        if (err != 0) {
            return prv_fail(rt, err);
        }
    }
    /* Tampered ciphertext is named as such before the model digest is computed (PROTOCOL 6.2). */
    if (prv_ciphertext_check(rt, t) != 0) {
        return prv_drop_failed(rt, -TFA_ERR_DIGEST_MISMATCH);
    }
    uint8_t digest[32];
    /* For clear RAW the payload digest equals the model digest (checked by the parser): one hash covers
     * both. */
    err = prv_hash_flash(rt, prv_model_addr(rt, t), m->model_size, digest);
    if (err != 0) {
        return prv_fail(rt, err);
    }
    if (memcmp(digest, m->model_sha256, 32) != 0) {
        return prv_drop_failed(rt, -TFA_ERR_DIGEST_MISMATCH);
    }
    tfa_state_t next = rt->state;
    next.phase = TFA_PHASE_DOWNLOADED;
    next.slot_valid |= prv_bit(t);
    next.download_offset = next.download_size;
    memset(next.decoder, 0, sizeof(next.decoder));
    err = prv_commit(rt, &next);
    if (err != 0) {
        return prv_fail(rt, err);
    }
    rt->decoding = 0;
    prv_forget_key(rt);
    return 0;
}

int tfa_install_abort(tfa_runtime_t *rt)
{
    if (rt == NULL || !rt->booted) {
        return -TFA_ERR_BAD_STATE;
    }
    if (rt->state.phase == TFA_PHASE_IDLE) {
        return 0;
    }
    if (rt->state.phase == TFA_PHASE_TRIAL) {
        return prv_fail(rt, -TFA_ERR_BAD_STATE);
    }
    uint8_t t = rt->state.target_slot;
    tfa_state_t next = rt->state;
    prv_drop_download(&next);
    int err = prv_commit(rt, &next);
    if (err != 0) {
        return prv_fail(rt, err);
    }
    if (t < 2u) {
        rt->slot_known &= (uint8_t)~prv_bit(t);
    }
    rt->decoding = 0;
    prv_forget_key(rt);
    return 0;
}

int tfa_activate(tfa_runtime_t *rt)
{
    if (rt == NULL || !rt->booted) {
        return -TFA_ERR_BAD_STATE;
    }
    if (rt->state.phase != TFA_PHASE_DOWNLOADED || !prv_slot_ok(rt, rt->state.target_slot)) {
        return prv_fail(rt, -TFA_ERR_BAD_STATE);
    }
    tfa_state_t next = rt->state;
    next.active_slot = rt->state.target_slot;
    next.phase = TFA_PHASE_TRIAL;
    next.trial_boots = 0;
    next.target_slot = TFA_STATE_NO_SLOT;
    next.download_offset = 0;
    next.download_size = 0;
    next.last_error = 0;
    int err = prv_commit(rt, &next);
    if (err != 0) {
        return prv_fail(rt, err);
    }
    rt->selftest_passed = 0;
    return 0;
}

/* The model of slot as the engine reads it: in place through the memory map, or for a model encrypted
 * at rest decrypted into config->model_ram (tfa_rest_load). NULL when neither is possible. */
static const uint8_t *prv_model_bytes(const tfa_runtime_t *rt, uint8_t slot)
{
#ifndef TFA_NO_ENCRYPTION
    if (tfa_rest_encrypted(&rt->rest, slot)) {
        return tfa_rest_load(&rt->rest, slot, rt->config->model_ram);
    }
#endif
    return rt->flash->mapped != NULL ? rt->flash->mapped + prv_model_addr(rt, slot) : NULL;
}

/* Everything that must hold for the active model to run: authentic manifest, intact model, hook. */
static int prv_check_active(const tfa_runtime_t *rt)
{
    uint8_t slot = rt->state.active_slot;
    const tfa_manifest_t *m = &rt->slot_manifest[slot];
    tfa_manifest_t reread;
    int err = prv_load_manifest(rt, slot, &reread);
    if (err != 0) {
        return err == -TFA_ERR_FLASH_IO ? err : -TFA_ERR_DIGEST_MISMATCH;
    }
    if (memcmp(&reread, m, sizeof(reread)) != 0) {
        return -TFA_ERR_DIGEST_MISMATCH;
    }
    uint8_t digest[32];
    err = prv_hash_flash(rt, prv_model_addr(rt, slot), m->model_size, digest);
    if (err != 0) {
        return err;
    }
    if (memcmp(digest, m->model_sha256, 32) != 0) {
        return -TFA_ERR_DIGEST_MISMATCH;
    }
    const tfa_device_config_t *cfg = rt->config;
    if (cfg->selftest_hook != NULL) {
        const uint8_t *model = prv_model_bytes(rt, slot);
        err = cfg->selftest_hook(cfg->selftest_ctx, m, model, m->model_size);
        if (err != 0) {
            return (err < 0 && err > -256) ? err : -TFA_ERR_SELFTEST_FAILED;
        }
    }
    return 0;
}

int tfa_selftest(tfa_runtime_t *rt)
{
    if (rt == NULL || !rt->booted) {
        return -TFA_ERR_BAD_STATE;
    }
    if (!prv_slot_ok(rt, rt->state.active_slot)) {
        return prv_fail(rt, -TFA_ERR_BAD_STATE);
    }
    int result = prv_check_active(rt);
    if (result == 0) {
        if (rt->state.phase == TFA_PHASE_TRIAL) {
            rt->selftest_passed = 1;
        }
        return 0;
    }
    /* A flash read error says nothing about the model: report it, keep the trial. */
    if (rt->state.phase == TFA_PHASE_TRIAL && result != -TFA_ERR_FLASH_IO) {
        tfa_state_t next = rt->state;
        prv_abandon_trial(&next, (uint8_t)-result);
        rt->selftest_passed = 0;
        int err = prv_commit(rt, &next);
        if (err != 0) {
            return prv_fail(rt, err);
        }
    }
    return prv_fail(rt, result);
}

int tfa_confirm(tfa_runtime_t *rt)
{
    if (rt == NULL || !rt->booted) {
        return -TFA_ERR_BAD_STATE;
    }
    const tfa_manifest_t *m = tfa_active_manifest(rt);
    if (rt->state.phase != TFA_PHASE_TRIAL || !rt->selftest_passed || m == NULL) {
        return prv_fail(rt, -TFA_ERR_BAD_STATE);
    }
    tfa_state_t next = rt->state;
    next.phase = TFA_PHASE_IDLE;
    next.trial_boots = 0;
    next.last_error = 0;
    if (m->security_counter > next.security_floor) {
        next.security_floor = m->security_counter;
    }
    int err = prv_commit(rt, &next);
    if (err != 0) {
        return prv_fail(rt, err);
    }
    rt->selftest_passed = 0;
    return 0;
}

int tfa_revert(tfa_runtime_t *rt)
{
    if (rt == NULL || !rt->booted) {
        return -TFA_ERR_BAD_STATE;
    }
    uint8_t phase = rt->state.phase;
    if (phase == TFA_PHASE_DOWNLOADING || phase == TFA_PHASE_DOWNLOADED) {
        return prv_fail(rt, -TFA_ERR_BAD_STATE);
    }
    uint8_t active = rt->state.active_slot;
    if (active >= 2u) {
        return prv_fail(rt, -TFA_ERR_NO_PREVIOUS);
    }
    uint8_t other = (uint8_t)(1u - active);
    if (!prv_slot_ok(rt, other)) {
        return prv_fail(rt, -TFA_ERR_NO_PREVIOUS);
    }
    tfa_state_t next = rt->state;
    if (phase == TFA_PHASE_TRIAL) {
        prv_abandon_trial(&next, 0);
    } else {
        /* A rollback must not go below the floor raised by a later confirmed model. */
        if (rt->slot_manifest[other].security_counter < rt->state.security_floor) {
            return prv_fail(rt, -TFA_ERR_ROLLBACK_REFUSED);
        }
        next.active_slot = other;
        next.last_error = 0;
    }
    int err = prv_commit(rt, &next);
    if (err != 0) {
        return prv_fail(rt, err);
    }
    rt->selftest_passed = 0;
    return 0;
}

const uint8_t *tfa_active_model(const tfa_runtime_t *rt, uint32_t *len)
{
    const tfa_manifest_t *m = tfa_active_manifest(rt);
    const uint8_t *model = m != NULL ? prv_model_bytes(rt, rt->state.active_slot) : NULL;
    if (len != NULL) {
        *len = model != NULL ? m->model_size : 0u;
    }
    return model;
}
