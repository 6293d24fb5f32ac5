/* Internals shared by the install state machine's files (not an API): runtime.c (state records, decoder
 * checkpoints, boot, status), runtime_install.c (begin, key, chunk, end, abort), runtime_trial.c
 * (activate, self-test, confirm, revert). The one-line helpers are static inline so that the split costs
 * no calls; firmware.elf is link-time optimized, so the tfa_rt_* functions inline across files there
 * (tfa_rt_fail is not inline: with its many callers, inline it cost firmware.elf 8 bytes). */
#ifndef TFA_RUNTIME_INTERNAL_H
#define TFA_RUNTIME_INTERNAL_H

#include <stdint.h>

#include "tfa/errors.h"
#include "tfa/install_crypt.h"
#include "tfa/runtime.h"

static inline uint8_t prv_bit(uint8_t slot)
{
    return (uint8_t)(1u << slot);
}

static inline uint32_t prv_model_addr(const tfa_runtime_t *rt, uint8_t slot)
{
    return tfa_slot_address(rt, slot) + TFA_SLOT_MODEL_OFFSET;
}

/* Where model bytes are read and programmed: the at-rest view (PROTOCOL 6.6), which encrypts the model
 * of an encrypted package on its way to flash and decrypts it on the way back; the port's flash as is
 * without decryption. Manifests and the state log always use the port's flash. */
static inline const tfa_flash_t *prv_store(const tfa_runtime_t *rt)
{
#ifndef TFA_NO_ENCRYPTION
    return &rt->rest.flash;
#else
    return rt->flash;
#endif
}

/* Slot holds a complete verified model whose manifest authenticated at boot or begin. */
static inline int prv_slot_ok(const tfa_runtime_t *rt, uint8_t slot)
{
    return slot < 2u && (rt->state.slot_valid & prv_bit(slot)) != 0u && (rt->slot_known & prv_bit(slot)) != 0u;
}

#ifndef TFA_NO_ENCRYPTION
static inline int prv_encrypted(const tfa_runtime_t *rt, uint8_t slot)
{
    return slot < 2u && (rt->slot_manifest[slot].flags & TFA_MANIFEST_FLAG_ENCRYPTED) != 0u;
}

/* The content key stream is gone (download over or replaced): a new wrap is needed. */
static inline void prv_forget_key(tfa_runtime_t *rt)
{
    tfa_crypt_forget(&rt->crypt);
}
#else
/* Built without decryption (TFA_NO_ENCRYPTION): encrypted packages are refused at begin. */
static inline int prv_encrypted(const tfa_runtime_t *rt, uint8_t slot)
{
    (void)rt;
    (void)slot;
    return 0;
}

static inline void prv_forget_key(tfa_runtime_t *rt)
{
    (void)rt;
}
#endif

static inline int prv_decoded(const tfa_runtime_t *rt, uint8_t slot)
{
    return rt->slot_manifest[slot].payload_encoding != TFA_ENC_RAW;
}

/* state records and slots (runtime.c); tfa_rt_fail notes err in last_error and returns it */
int tfa_rt_fail(tfa_runtime_t *rt, int err);
int tfa_rt_state_equal(const tfa_state_t *a, const tfa_state_t *b);
/* Persist next as one record; the RAM copy follows only once it is durable. */
int tfa_rt_commit(tfa_runtime_t *rt, const tfa_state_t *next);
int tfa_rt_load_manifest(const tfa_runtime_t *rt, uint8_t slot, tfa_manifest_t *out);
int tfa_rt_hash_flash(const tfa_runtime_t *rt, uint32_t addr, uint32_t len, uint8_t digest[32]);
void tfa_rt_abandon_trial(tfa_state_t *next, uint8_t error);
void tfa_rt_drop_download(tfa_state_t *next);
/* payload decoder (runtime.c): the record's checkpoint bytes, and (re)starting the decoder of st */
void tfa_rt_checkpoint_encode(const tfa_delta_checkpoint_t *cp, uint8_t out[TFA_STATE_DECODER_SIZE]);
int tfa_rt_decoder_arm(tfa_runtime_t *rt, const tfa_state_t *st);

#endif
