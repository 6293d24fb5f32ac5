/* SHA-256 (FIPS 180-4), incremental. */
#ifndef TFA_SHA256_H
#define TFA_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct tfa_sha256_ctx {
    uint32_t h[8];
    uint64_t total_len;
    uint8_t block[64];
    uint32_t block_len;
} tfa_sha256_ctx;

void tfa_sha256_init(tfa_sha256_ctx *ctx);
void tfa_sha256_update(tfa_sha256_ctx *ctx, const uint8_t *data, size_t len);
void tfa_sha256_final(tfa_sha256_ctx *ctx, uint8_t digest[32]);
void tfa_sha256(const uint8_t *data, size_t len, uint8_t digest[32]);

#endif
