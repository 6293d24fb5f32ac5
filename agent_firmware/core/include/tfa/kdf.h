/* HMAC-SHA256 (RFC 2104) and HKDF-SHA256 (RFC 5869), over the core's SHA-256. */
#ifndef TFA_KDF_H
#define TFA_KDF_H

#include <stddef.h>
#include <stdint.h>

#include "tfa/sha256.h"

typedef struct tfa_hmac_sha256_ctx {
    tfa_sha256_ctx inner;
    tfa_sha256_ctx outer; /* already fed the outer padded key */
} tfa_hmac_sha256_ctx;

void tfa_hmac_sha256_init(tfa_hmac_sha256_ctx *ctx, const uint8_t *key, size_t key_len);
void tfa_hmac_sha256_update(tfa_hmac_sha256_ctx *ctx, const uint8_t *data, size_t len);
/* Writes the 32-byte MAC and clears the context. */
void tfa_hmac_sha256_final(tfa_hmac_sha256_ctx *ctx, uint8_t mac[32]);
void tfa_hmac_sha256(const uint8_t *key, size_t key_len, const uint8_t *data, size_t len, uint8_t mac[32]);

/* HKDF-SHA256 extract-then-expand into okm (okm_len bytes). Returns 0, or -1 if okm_len > 255 * 32. */
int tfa_hkdf_sha256(uint8_t *okm, size_t okm_len, const uint8_t *salt, size_t salt_len, const uint8_t *ikm,
                    size_t ikm_len, const uint8_t *info, size_t info_len);

/* 1 if a and b (len bytes) are equal, else 0; the time depends on len only. */
int tfa_ct_equal(const uint8_t *a, const uint8_t *b, size_t len);

/* Zeroes len bytes in a way the compiler may not drop (secrets on the stack). */
void tfa_wipe(void *p, size_t len);

#endif
