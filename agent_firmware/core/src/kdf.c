/* HMAC-SHA256 (RFC 2104) and HKDF-SHA256 (RFC 5869) over tfa_sha256; helpers for secrets. */
#include "tfa/kdf.h"

#include <string.h>

void tfa_wipe(void *p, size_t len)
{
    /* Through a volatile pointer: a plain memset of a buffer about to die may be optimised away. */
    volatile uint8_t *v = (volatile uint8_t *)p;
    while (len-- > 0u) {
        *v++ = 0;
    }
}

int tfa_ct_equal(const uint8_t *a, const uint8_t *b, size_t len)
{
    uint8_t diff = 0;
    for (size_t i = 0; i < len; i++) {
        diff |= (uint8_t)(a[i] ^ b[i]);
    }
    return diff == 0u;
}

void tfa_hmac_sha256_init(tfa_hmac_sha256_ctx *ctx, const uint8_t *key, size_t key_len)
{
    uint8_t block[64];
    memset(block, 0, sizeof(block));
    if (key_len > sizeof(block)) {
        tfa_sha256(key, key_len, block); /* longer keys are hashed first */
    } else if (key_len > 0u) {
        memcpy(block, key, key_len);
    }
    for (unsigned i = 0; i < 64u; i++) {
        block[i] ^= 0x36u;
    }
    tfa_sha256_init(&ctx->inner);
    tfa_sha256_update(&ctx->inner, block, sizeof(block));
    for (unsigned i = 0; i < 64u; i++) {
        block[i] ^= 0x36u ^ 0x5cu;
    }
    tfa_sha256_init(&ctx->outer);
    tfa_sha256_update(&ctx->outer, block, sizeof(block));
    tfa_wipe(block, sizeof(block));
}

void tfa_hmac_sha256_update(tfa_hmac_sha256_ctx *ctx, const uint8_t *data, size_t len)
{
    tfa_sha256_update(&ctx->inner, data, len);
}

void tfa_hmac_sha256_final(tfa_hmac_sha256_ctx *ctx, uint8_t mac[32])
{
    uint8_t inner[32];
    tfa_sha256_final(&ctx->inner, inner);
    tfa_sha256_update(&ctx->outer, inner, sizeof(inner));
    tfa_sha256_final(&ctx->outer, mac);
    tfa_wipe(inner, sizeof(inner));
    tfa_wipe(ctx, sizeof(*ctx));
}

void tfa_hmac_sha256(const uint8_t *key, size_t key_len, const uint8_t *data, size_t len, uint8_t mac[32])
{
    tfa_hmac_sha256_ctx ctx;
    tfa_hmac_sha256_init(&ctx, key, key_len);
    tfa_hmac_sha256_update(&ctx, data, len);
    tfa_hmac_sha256_final(&ctx, mac);
}

int tfa_hkdf_sha256(uint8_t *okm, size_t okm_len, const uint8_t *salt, size_t salt_len, const uint8_t *ikm,
                    size_t ikm_len, const uint8_t *info, size_t info_len)
{
    if (okm_len > 255u * 32u) {
        return -1;
    }
    uint8_t prk[32];
    uint8_t t[32];
    /* extract: an absent salt is HashLen zero bytes, which HMAC pads to the same block as no key */
    tfa_hmac_sha256(salt, salt_len, ikm, ikm_len, prk);
    size_t done = 0;
    for (uint8_t i = 1; done < okm_len; i++) {
        tfa_hmac_sha256_ctx ctx;
        tfa_hmac_sha256_init(&ctx, prk, sizeof(prk));
        if (i > 1u) {
            tfa_hmac_sha256_update(&ctx, t, sizeof(t));
        }
        tfa_hmac_sha256_update(&ctx, info, info_len);
        tfa_hmac_sha256_update(&ctx, &i, 1);
        tfa_hmac_sha256_final(&ctx, t);
        size_t n = okm_len - done < 32u ? okm_len - done : 32u;
        memcpy(okm + done, t, n);
        done += n;
    }
    tfa_wipe(prk, sizeof(prk));
    tfa_wipe(t, sizeof(t));
    return 0;
}
