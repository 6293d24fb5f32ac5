/* Decryption of an encrypted download (docs/PROTOCOL.md section 6), kept apart from the install state
 * machine (runtime*.c), which decides when each step runs; this file only holds the key stream and the
 * ciphertext digest. No malloc: the caller owns the context (inside tfa_runtime_t).
 *
 * Contract, in the order runtime_install.c calls it for one download:
 *   tfa_crypt_open      once per wrap (after begin, after every reboot): opens the 80-byte wrap against
 *                       the manifest bytes as written in the target slot; the ciphertext digest is kept
 *                       only when the payload will arrive from offset 0 (resume == 0);
 *   tfa_crypt_at        per chunk, before any of its bytes is used: notes the ciphertext for the digest
 *                       and seeks the key stream to the chunk's payload offset;
 *   tfa_crypt_piece     the chunk in pieces of at most TFA_CRYPT_PIECE bytes, decrypted into a caller
 *                       buffer (the key stream advances; the range was checked by tfa_crypt_at);
 *   tfa_crypt_check     at install end, before the model digest: the ciphertext digest against the
 *                       manifest's payload_sha256 when the whole payload was hashed;
 *   tfa_crypt_forget    whenever the download ends, is dropped or replaced: wipes the key stream.
 * Built with TFA_NO_ENCRYPTION the context is empty and these functions do not exist. */
#ifndef TFA_INSTALL_CRYPT_H
#define TFA_INSTALL_CRYPT_H

#include <stdint.h>

#include "tfa/chacha20.h"
#include "tfa/flash.h"
#include "tfa/key_wrap.h"
#include "tfa/manifest.h"
#include "tfa/sha256.h"

#define TFA_CRYPT_PIECE 256u /* stack bytes runtime_install.c decrypts a chunk through */

#ifndef TFA_NO_ENCRYPTION
/* keyed is 1 once a wrap opened (since boot; a reboot needs the wrap again). payload_hash covers the
 * ciphertext [0, hashed) while hashing is 1, i.e. while the payload arrived in order from offset 0 since
 * the key came; a download resumed after a reboot is judged by model_sha256 alone. */
typedef struct tfa_install_crypt {
    uint8_t keyed;
    uint8_t hashing;
    uint32_t hashed;
    tfa_chacha20_ctx cipher;
    tfa_sha256_ctx payload_hash;
} tfa_install_crypt_t;

/* 0 with the key stream at offset 0, or -TFA_ERR_KEY_UNWRAP (nothing kept) when the wrap does not open
 * for this device and manifest. resume: the payload offset the next chunk will have. */
int tfa_crypt_open(tfa_install_crypt_t *c, const uint8_t wrap[TFA_KEY_WRAP_SIZE], const uint8_t device_private[32],
                   const uint8_t device_public[32], const uint8_t manifest[TFA_MANIFEST_SIZE], uint32_t resume);
/* 0, -TFA_ERR_BAD_STATE without a key, -TFA_ERR_FIELD_RANGE past the key stream's end. */
int tfa_crypt_at(tfa_install_crypt_t *c, uint32_t offset, const uint8_t *data, uint32_t len);
/* buf[0..n) = the clear bytes of data[0..n); returns buf. n <= TFA_CRYPT_PIECE. */
const uint8_t *tfa_crypt_piece(tfa_install_crypt_t *c, const uint8_t *data, uint32_t n, uint8_t *buf);
/* 0 unless the ciphertext digest covered all payload_size bytes and differs from payload_sha256
 * (-TFA_ERR_DIGEST_MISMATCH). */
int tfa_crypt_check(tfa_install_crypt_t *c, uint32_t payload_size, const uint8_t payload_sha256[32]);
void tfa_crypt_forget(tfa_install_crypt_t *c);

/* ---- at rest (PROTOCOL 6.6): the model of an encrypted package never lies in flash in clear ----
 * Its slot holds model XOR ChaCha20(storage_key, nonce = model_sha256[0..11]), byte i of the model at key
 * stream offset i, where storage_key = HKDF-SHA256(salt = device_public, ikm = device_private,
 * info = "tinyfleet storage key v1", L = 32): a per-device key that needs no wrap kept in flash.
 * The runtime reaches model bytes through `flash` below, a view of the port's flash that encrypts what it
 * programs and decrypts what it reads inside each slot's encrypted model range (everything else passes
 * through): the install path, the decoder (whose delta base is read through it) and the digest checks
 * see clear bytes, the flash only ciphertext. Deterministic, so a chunk programmed again after a power
 * cut programs the same bits. The view has no memory map: the engine gets the model decrypted into
 * RAM (tfa_model_ram_t). */
typedef struct tfa_rest_view {
    tfa_flash_t flash;            /* ctx = this view, mapped = NULL */
    const tfa_flash_t *raw;       /* the port's flash */
    const tfa_manifest_t *slots;  /* the runtime's slot_manifest[2]; NULL: no device key, all passes through */
    uint32_t model_addr[2];       /* flash address of each slot's model */
    uint8_t key[32];
} tfa_rest_view_t;

/* Sets the view up over raw (device_private NULL: no storage key). */
void tfa_rest_init(tfa_rest_view_t *v, const tfa_flash_t *raw, const tfa_manifest_t slots[2],
                   uint32_t model_addr0, uint32_t model_addr1, const uint8_t *device_private,
                   const uint8_t *device_public);
/* 1 when slot's model is stored encrypted (its manifest has flags bit 0 and the device has a key). */
int tfa_rest_encrypted(const tfa_rest_view_t *v, uint8_t slot);
#endif

/* Caller-owned RAM the model of an encrypted slot is decrypted into for the self-test and inference
 * (tfa_device_config_t.model_ram): at least the model's size. held/sha256 say which model buf holds.
 * A device can reserve buf statically, or leave it NULL and give acquire, called the first time a model
 * needs it (a simulated device then pays for it only once it runs an encrypted model); acquire sets
 * *size and returns the buffer, or NULL. */
typedef struct tfa_model_ram {
    uint8_t *buf;
    uint32_t size;
    uint8_t held;
    uint8_t sha256[32];
    uint8_t *(*acquire)(void *ctx, uint32_t need, uint32_t *size);
    void *acquire_ctx;
} tfa_model_ram_t;

#ifndef TFA_NO_ENCRYPTION
/* The model of slot (encrypted at rest) in ram->buf: decrypted from flash and checked against the
 * manifest's model_sha256 unless ram already holds that model. NULL when ram is NULL or too small, on a
 * flash error or a digest mismatch (ram then holds nothing). */
const uint8_t *tfa_rest_load(const tfa_rest_view_t *v, uint8_t slot, tfa_model_ram_t *ram);
#endif

#endif
