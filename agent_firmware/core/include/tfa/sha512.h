/* SHA-512 (FIPS 180-4), incremental; used by Ed25519. */
#ifndef TFA_SHA512_H
#define TFA_SHA512_H

#include <stddef.h>
#include <stdint.h>

typedef struct tfa_sha512_ctx {
    uint64_t h[8];
    uint64_t total_len;
    uint8_t block[128];
    uint32_t block_len;
} tfa_sha512_ctx;

void tfa_sha512_init(tfa_sha512_ctx *ctx);
void tfa_sha512_update(tfa_sha512_ctx *ctx, const uint8_t *data, size_t len);
void tfa_sha512_final(tfa_sha512_ctx *ctx, uint8_t digest[64]);
void tfa_sha512(const uint8_t *data, size_t len, uint8_t digest[64]);

#endif
