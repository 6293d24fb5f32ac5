/* SHA-256 per FIPS 180-4, written for flash rather than speed: one loop over the 64 rounds, with the
 * message schedule computed on the fly in a rolling 16-word window (64 bytes of stack instead of 256).
 * Unrolling 16 rounds ran ~1.8x fewer instructions on the Cortex-M4 but cost ~1.7 KB more flash, which
 * the 24 KiB agent budget cannot spare; the extra ~3 M instructions per 100 KB hashed are small next to
 * receiving those 100 KB over the link. */
#include "tfa/sha256.h"

#include <string.h>

#include "sha2_internal.h"

const uint32_t tfa_sha2_k32[64] = {
    0x428A2F98u, 0x71374491u, 0xB5C0FBCFu, 0xE9B5DBA5u, 0x3956C25Bu, 0x59F111F1u, 0x923F82A4u, 0xAB1C5ED5u,
    0xD807AA98u, 0x12835B01u, 0x243185BEu, 0x550C7DC3u, 0x72BE5D74u, 0x80DEB1FEu, 0x9BDC06A7u, 0xC19BF174u,
    0xE49B69C1u, 0xEFBE4786u, 0x0FC19DC6u, 0x240CA1CCu, 0x2DE92C6Fu, 0x4A7484AAu, 0x5CB0A9DCu, 0x76F988DAu,
    0x983E5152u, 0xA831C66Du, 0xB00327C8u, 0xBF597FC7u, 0xC6E00BF3u, 0xD5A79147u, 0x06CA6351u, 0x14292967u,
    0x27B70A85u, 0x2E1B2138u, 0x4D2C6DFCu, 0x53380D13u, 0x650A7354u, 0x766A0ABBu, 0x81C2C92Eu, 0x92722C85u,
    0xA2BFE8A1u, 0xA81A664Bu, 0xC24B8B70u, 0xC76C51A3u, 0xD192E819u, 0xD6990624u, 0xF40E3585u, 0x106AA070u,
    0x19A4C116u, 0x1E376C08u, 0x2748774Cu, 0x34B0BCB5u, 0x391C0CB3u, 0x4ED8AA4Au, 0x5B9CCA4Fu, 0x682E6FF3u,
    0x748F82EEu, 0x78A5636Fu, 0x84C87814u, 0x8CC70208u, 0x90BEFFFAu, 0xA4506CEBu, 0xBEF9A3F7u, 0xC67178F2u,
};

const uint32_t tfa_sha2_h32[8] = {
    0x6A09E667u, 0xBB67AE85u, 0x3C6EF372u, 0xA54FF53Au, 0x510E527Fu, 0x9B05688Cu, 0x1F83D9ABu, 0x5BE0CD19u,
};

#define ROTR(x, n) (((x) >> (n)) | ((x) << (32u - (n))))
#define BSIG0(x) (ROTR(x, 2) ^ ROTR(x, 13) ^ ROTR(x, 22))
#define BSIG1(x) (ROTR(x, 6) ^ ROTR(x, 11) ^ ROTR(x, 25))
#define SSIG0(x) (ROTR(x, 7) ^ ROTR(x, 18) ^ ((x) >> 3))
#define SSIG1(x) (ROTR(x, 17) ^ ROTR(x, 19) ^ ((x) >> 10))

static uint32_t prv_load_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static void prv_store_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void prv_compress(uint32_t state[8], const uint8_t block[64])
{
    uint32_t w[16];
    uint32_t a = state[0], b = state[1], c = state[2], d = state[3];
    uint32_t e = state[4], f = state[5], g = state[6], h = state[7];

    for (unsigned t = 0; t < 64u; t++) {
        /* w[t & 15] holds W[t-16] until it is overwritten with W[t]; W[t-2], W[t-7] and W[t-15] are
         * still in the window at (t-2), (t-7) and (t-15) mod 16. */
        uint32_t *wt = &w[t & 15u];
        if (t < 16u) {
            *wt = prv_load_be32(block + 4u * t);
        } else {
            *wt += SSIG1(w[(t + 14u) & 15u]) + w[(t + 9u) & 15u] + SSIG0(w[(t + 1u) & 15u]);
        }
        uint32_t t1 = h + BSIG1(e) + ((e & f) ^ (~e & g)) + tfa_sha2_k32[t] + *wt;
        uint32_t t2 = BSIG0(a) + ((a & b) ^ (a & c) ^ (b & c));
        h = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    state[0] += a;
    state[1] += b;
    state[2] += c;
    state[3] += d;
    state[4] += e;
    state[5] += f;
    state[6] += g;
    state[7] += h;
}

void tfa_sha256_init(tfa_sha256_ctx *ctx)
{
    memcpy(ctx->h, tfa_sha2_h32, sizeof(ctx->h));
    ctx->total_len = 0;
    ctx->block_len = 0;
}

void tfa_sha256_update(tfa_sha256_ctx *ctx, const uint8_t *data, size_t len)
{
    if (len == 0) {
        return; /* data may be NULL for an empty update */
    }
    ctx->total_len += (uint64_t)len;
    if (ctx->block_len > 0) {
        size_t room = 64u - ctx->block_len;
        size_t take = len < room ? len : room;
        memcpy(ctx->block + ctx->block_len, data, take);
        ctx->block_len += (uint32_t)take;
        data += take;
        len -= take;
        if (ctx->block_len < 64u) {
            return;
        }
        prv_compress(ctx->h, ctx->block);
        ctx->block_len = 0;
    }
    /* Whole blocks straight from the caller's buffer: no copy. */
    while (len >= 64u) {
        prv_compress(ctx->h, data);
        data += 64;
        len -= 64u;
    }
    if (len > 0) {
        memcpy(ctx->block, data, len);
        ctx->block_len = (uint32_t)len;
    }
}

void tfa_sha256_final(tfa_sha256_ctx *ctx, uint8_t digest[32])
{
    uint64_t bit_len = ctx->total_len << 3;
    uint32_t n = ctx->block_len;

    ctx->block[n++] = 0x80u;
    if (n > 56u) {
        memset(ctx->block + n, 0, 64u - n);
        prv_compress(ctx->h, ctx->block);
        n = 0;
    }
    memset(ctx->block + n, 0, 56u - n);
    prv_store_be32(ctx->block + 56, (uint32_t)(bit_len >> 32));
    prv_store_be32(ctx->block + 60, (uint32_t)bit_len);
    prv_compress(ctx->h, ctx->block);
    for (unsigned i = 0; i < 8u; i++) {
        prv_store_be32(digest + 4u * i, ctx->h[i]);
    }
    memset(ctx, 0, sizeof(*ctx));
}

void tfa_sha256(const uint8_t *data, size_t len, uint8_t digest[32])
{
    tfa_sha256_ctx ctx;
    tfa_sha256_init(&ctx);
    tfa_sha256_update(&ctx, data, len);
    tfa_sha256_final(&ctx, digest);
}
