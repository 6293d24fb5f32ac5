/* Download into the inactive slot: begin (policy, erase, manifest), key (encrypted packages), chunk
 * (RAW straight to flash, encodings 1 and 2 through the decoder), end (digest check), abort. The rule of
 * runtime.c holds: the target slot is written only while the state says it is not valid. */
#include <string.h>

#include "runtime_internal.h"

#define PRV_CRYPT_PIECE TFA_CRYPT_PIECE /* stack bytes for decrypting a chunk piece by piece */

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
        /* The model stays encrypted at rest and the engine runs it from model RAM (PROTOCOL 6.6): one
         * larger than a fixed buffer could never pass its self-test, so it is refused before writing. */
        const tfa_model_ram_t *ram = cfg->model_ram;
        if (ram != NULL && ram->acquire == NULL && m->model_size > ram->size) {
            return -TFA_ERR_MODEL_RAM_TOO_SMALL;
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
        return tfa_rt_fail(rt, -TFA_ERR_BAD_STATE);
    }
    tfa_manifest_t m;
    int err = tfa_manifest_parse(manifest, len, rt->config->keys, rt->config->key_count, &m);
    if (err == 0) {
        err = prv_policy(rt, &m);
    }
    if (err != 0) {
        return tfa_rt_fail(rt, err);
    }
    uint8_t t = rt->state.target_slot;
    int same = (rt->state.phase == TFA_PHASE_DOWNLOADING || rt->state.phase == TFA_PHASE_DOWNLOADED) &&
               t < 2u && (rt->slot_known & prv_bit(t)) != 0u &&
               memcmp(&rt->slot_manifest[t], &m, sizeof(m)) == 0;
    if (same) {
        /* resume: status.download_offset says where (a decoder lost to a failure restarts) */
        if (rt->state.phase == TFA_PHASE_DOWNLOADING && prv_decoded(rt, t) && !rt->decoding) {
            err = tfa_rt_decoder_arm(rt, &rt->state);
        }
        return err != 0 ? tfa_rt_fail(rt, err) : 0;
    }
    rt->decoding = 0;
    prv_forget_key(rt);
    uint8_t target = rt->state.active_slot == 0u ? 1u : 0u;
    /* 1. The slot stops being valid before a single byte of it changes. */
    tfa_state_t next = rt->state;
    tfa_rt_drop_download(&next);
    next.slot_valid &= (uint8_t)~prv_bit(target);
    next.last_error = 0;
    if (!tfa_rt_state_equal(&next, &rt->state)) {
        err = tfa_rt_commit(rt, &next);
        if (err != 0) {
            return tfa_rt_fail(rt, err);
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
        return tfa_rt_fail(rt, err);
    }
    /* 4. Downloading from offset 0. */
    next.phase = TFA_PHASE_DOWNLOADING;
    next.target_slot = target;
    next.download_offset = 0;
    next.download_size = m.payload_size;
    err = tfa_rt_commit(rt, &next);
    if (err != 0) {
        return tfa_rt_fail(rt, err);
    }
    memcpy(&rt->slot_manifest[target], &m, sizeof(m)); /* memcpy: padding too, for memcmp */
    rt->slot_known |= prv_bit(target);
    if (prv_decoded(rt, target)) {
        err = tfa_rt_decoder_arm(rt, &rt->state);
    }
    return err != 0 ? tfa_rt_fail(rt, err) : 0;
}

/* Give the current download up with code (its slot stays invalid). */
static int prv_drop_failed(tfa_runtime_t *rt, int code)
{
    uint8_t t = rt->state.target_slot;
    tfa_state_t next = rt->state;
    tfa_rt_drop_download(&next);
    next.last_error = (uint8_t)-code;
    int err = tfa_rt_commit(rt, &next);
    if (t < 2u) {
        rt->slot_known &= (uint8_t)~prv_bit(t);
    }
    rt->decoding = 0;
    prv_forget_key(rt);
    return tfa_rt_fail(rt, err != 0 ? err : code);
}

#ifndef TFA_NO_ENCRYPTION
int tfa_install_key(tfa_runtime_t *rt, const uint8_t wrap[TFA_KEY_WRAP_SIZE])
{
    if (rt == NULL || !rt->booted || wrap == NULL) {
        return -TFA_ERR_BAD_STATE;
    }
    uint8_t t = rt->state.target_slot;
    if (rt->state.phase != TFA_PHASE_DOWNLOADING || !prv_encrypted(rt, t)) {
        return tfa_rt_fail(rt, -TFA_ERR_BAD_STATE);
    }
    const tfa_device_config_t *cfg = rt->config;
    if (cfg->encryption_private == NULL || cfg->encryption_public == NULL) {
        return tfa_rt_fail(rt, -TFA_ERR_KEY_UNWRAP);
    }
    /* The wrap is bound to the signed manifest bytes, read back from the slot begin wrote them to. */
    uint8_t raw[TFA_MANIFEST_SIZE];
    int err = rt->flash->read(rt->flash->ctx, tfa_slot_address(rt, t), raw, sizeof(raw));
    if (err != 0) {
        prv_forget_key(rt);
        return tfa_rt_fail(rt, err);
    }
    uint32_t resume = rt->decoding ? rt->received : rt->state.download_offset;
    err = tfa_crypt_open(&rt->crypt, wrap, cfg->encryption_private, cfg->encryption_public, raw, resume);
    return err != 0 ? tfa_rt_fail(rt, err) : 0;
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
        return tfa_rt_fail(rt, -TFA_ERR_BAD_STATE);
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
        tfa_rt_checkpoint_encode(cp, next.decoder);
        next.download_offset = cp->valid ? cp->in_offset : 0u;
        if (!tfa_rt_state_equal(&next, &rt->state)) {
            err = tfa_rt_commit(rt, &next);
        }
    }
    if (err != 0) {
        /* Back to the last durable boundary: the agent sends again from status.download_offset. */
        (void)tfa_rt_decoder_arm(rt, &rt->state);
        return tfa_rt_fail(rt, err);
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
        return tfa_rt_fail(rt, -TFA_ERR_BAD_STATE);
    }
    uint32_t expected = rt->decoding ? rt->received : st->download_offset;
    if (offset != expected) {
        return tfa_rt_fail(rt, -TFA_ERR_BAD_OFFSET);
    }
    if (len > st->download_size - offset || (data == NULL && len != 0u)) {
        return tfa_rt_fail(rt, -TFA_ERR_SIZE_MISMATCH);
    }
    if (len == 0u) {
        return 0;
    }
    int encrypted = prv_encrypted(rt, st->target_slot);
    int err = encrypted ? prv_cipher_at(rt, offset, data, len) : 0;
    if (err != 0) {
        return tfa_rt_fail(rt, err);
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
        return tfa_rt_fail(rt, err);
    }
    tfa_state_t next = *st;
    next.download_offset = offset + len;
    err = tfa_rt_commit(rt, &next);
    return err != 0 ? tfa_rt_fail(rt, err) : 0;
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
        return tfa_rt_fail(rt, -TFA_ERR_BAD_STATE);
    }
    uint32_t received = rt->decoding ? rt->received : rt->state.download_offset;
    if (received != rt->state.download_size) {
        return tfa_rt_fail(rt, -TFA_ERR_SIZE_MISMATCH);
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
            return tfa_rt_fail(rt, err);
        }
    }
    /* Tampered ciphertext is named as such before the model digest is computed (PROTOCOL 6.2). */
    if (prv_ciphertext_check(rt, t) != 0) {
        return prv_drop_failed(rt, -TFA_ERR_DIGEST_MISMATCH);
    }
    uint8_t digest[32];
    /* For clear RAW the payload digest equals the model digest (checked by the parser): one hash covers
     * both. */
    err = tfa_rt_hash_flash(rt, prv_model_addr(rt, t), m->model_size, digest);
    if (err != 0) {
        return tfa_rt_fail(rt, err);
    }
    if (memcmp(digest, m->model_sha256, 32) != 0) {
        return prv_drop_failed(rt, -TFA_ERR_DIGEST_MISMATCH);
    }
    tfa_state_t next = rt->state;
    next.phase = TFA_PHASE_DOWNLOADED;
    next.slot_valid |= prv_bit(t);
    next.download_offset = next.download_size;
    memset(next.decoder, 0, sizeof(next.decoder));
    err = tfa_rt_commit(rt, &next);
    if (err != 0) {
        return tfa_rt_fail(rt, err);
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
        return tfa_rt_fail(rt, -TFA_ERR_BAD_STATE);
    }
    uint8_t t = rt->state.target_slot;
    tfa_state_t next = rt->state;
    tfa_rt_drop_download(&next);
    int err = tfa_rt_commit(rt, &next);
    if (err != 0) {
        return tfa_rt_fail(rt, err);
    }
    if (t < 2u) {
        rt->slot_known &= (uint8_t)~prv_bit(t);
    }
    rt->decoding = 0;
    prv_forget_key(rt);
    return 0;
}
