/* SHA-512 per FIPS 180-4, used by Ed25519 (k = SHA-512(R || A || M)). Like sha256.c: rolling 16-word
 * schedule to keep the stack small (128 bytes). On a 32-bit core the 64-bit rotates compile to pairs of
 * 32-bit shifts, which is acceptable for the few blocks a verify hashes. */
#include "tfa/sha512.h"

#include <string.h>

#include "sha2_internal.h"

/* FIPS 180-4 derives SHA-512's K and H0 from the same cube and square roots of the first primes as
 * SHA-256's, 64 bits of them instead of 32: the high words of K[0..63] and of H0 are SHA-256's constants
 * (sha2_internal.h). Only the low words and K[64..79]'s high words are stored here, 288 bytes less flash
 * for one extra load per round; agent_firmware/tests/vectors/sha_random.txt checks every constant. */
static const uint32_t prv_k_lo[80] = {
    0xD728AE22u, 0x23EF65CDu, 0xEC4D3B2Fu, 0x8189DBBCu, 0xF348B538u, 0xB605D019u, 0xAF194F9Bu, 0xDA6D8118u,
    0xA3030242u, 0x45706FBEu, 0x4EE4B28Cu, 0xD5FFB4E2u, 0xF27B896Fu, 0x3B1696B1u, 0x25C71235u, 0xCF692694u,
    0x9EF14AD2u, 0x384F25E3u, 0x8B8CD5B5u, 0x77AC9C65u, 0x592B0275u, 0x6EA6E483u, 0xBD41FBD4u, 0x831153B5u,
    0xEE66DFABu, 0x2DB43210u, 0x98FB213Fu, 0xBEEF0EE4u, 0x3DA88FC2u, 0x930AA725u, 0xE003826Fu, 0x0A0E6E70u,
    0x46D22FFCu, 0x5C26C926u, 0x5AC42AEDu, 0x9D95B3DFu, 0x8BAF63DEu, 0x3C77B2A8u, 0x47EDAEE6u, 0x1482353Bu,
    0x4CF10364u, 0xBC423001u, 0xD0F89791u, 0x0654BE30u, 0xD6EF5218u, 0x5565A910u, 0x5771202Au, 0x32BBD1B8u,
    0xB8D2D0C8u, 0x5141AB53u, 0xDF8EEB99u, 0xE19B48A8u, 0xC5C95A63u, 0xE3418ACBu, 0x7763E373u, 0xD6B2B8A3u,
    0x5DEFB2FCu, 0x43172F60u, 0xA1F0AB72u, 0x1A6439ECu, 0x23631E28u, 0xDE82BDE9u, 0xB2C67915u, 0xE372532Bu,
    0xEA26619Cu, 0x21C0C207u, 0xCDE0EB1Eu, 0xEE6ED178u, 0x72176FBAu, 0xA2C898A6u, 0xBEF90DAEu, 0x131C471Bu,
    0x23047D84u, 0x40C72493u, 0x15C9BEBCu, 0x9C100D4Cu, 0xCB3E42B6u, 0xFC657E2Au, 0x3AD6FAECu, 0x4A475817u,
};

static const uint32_t prv_k_hi_tail[16] = {
    0xCA273ECEu, 0xD186B8C7u, 0xEADA7DD6u, 0xF57D4F7Fu, 0x06F067AAu, 0x0A637DC5u, 0x113F9804u, 0x1B710B35u,
    0x28DB77F5u, 0x32CAAB7Bu, 0x3C9EBE0Au, 0x431D67C4u, 0x4CC5D4BEu, 0x597F299Cu, 0x5FCB6FABu, 0x6C44198Cu,
};

static const uint32_t prv_h0_lo[8] = {
    0xF3BCC908u, 0x84CAA73Bu, 0xFE94F82Bu, 0x5F1D36F1u, 0xADE682D1u, 0x2B3E6C1Fu, 0xFB41BD6Bu, 0x137E2179u,
};

static uint64_t prv_k(unsigned t)
{
    uint32_t hi = t < 64u ? tfa_sha2_k32[t] : prv_k_hi_tail[t - 64u];
    return ((uint64_t)hi << 32) | prv_k_lo[t];
}

static uint64_t prv_rotr(uint64_t x, unsigned n)
{
    return (x >> n) | (x << (64u - n));
}

static uint64_t prv_load_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < 8u; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

static void prv_store_be64(uint8_t *p, uint64_t v)
{
    for (unsigned i = 0; i < 8u; i++) {
        p[i] = (uint8_t)(v >> (56u - 8u * i));
    }
}

static void prv_compress(uint64_t h[8], const uint8_t block[128])
{
    uint64_t w[16];
    /* The working variables a..h (i = 0..7) of round t are v[(i - t) & 7]: a round writes the new a over
     * the old h and adds t1 to d in place, and the others move by the index alone. 80 rounds are a
     * multiple of 8, so v ends in order. On the M4 this is 160 B smaller and 2% faster than moving
     * eight 64-bit variables (register pairs) each round (docs/BENCHMARKS.md, issue 17). */
    uint64_t v[8];
    memcpy(v, h, sizeof(v));

    for (unsigned t = 0; t < 80u; t++) {
        uint64_t wt;
        if (t < 16u) {
            wt = prv_load_be64(block + 8u * t);
        } else {
            uint64_t w2 = w[(t - 2u) & 15u];
            uint64_t w15 = w[(t - 15u) & 15u];
            uint64_t s0 = prv_rotr(w15, 1) ^ prv_rotr(w15, 8) ^ (w15 >> 7);
            uint64_t s1 = prv_rotr(w2, 19) ^ prv_rotr(w2, 61) ^ (w2 >> 6);
            wt = s1 + w[(t - 7u) & 15u] + s0 + w[t & 15u];
        }
        w[t & 15u] = wt;
#define V(i) v[((i) - t) & 7u]
        uint64_t e = V(4);
        uint64_t big_s1 = prv_rotr(e, 14) ^ prv_rotr(e, 18) ^ prv_rotr(e, 41);
        uint64_t ch = (e & V(5)) ^ (~e & V(6));
        uint64_t t1 = V(7) + big_s1 + ch + prv_k(t) + wt;
        uint64_t a = V(0), b = V(1), c = V(2);
        uint64_t big_s0 = prv_rotr(a, 28) ^ prv_rotr(a, 34) ^ prv_rotr(a, 39);
        uint64_t maj = (a & b) ^ (a & c) ^ (b & c);
        V(3) += t1; /* e of round t + 1 */
        V(7) = t1 + big_s0 + maj; /* a of round t + 1 */
#undef V
    }
    for (unsigned i = 0; i < 8u; i++) {
        h[i] += v[i];
    }
}

void tfa_sha512_init(tfa_sha512_ctx *ctx)
{
    for (unsigned i = 0; i < 8u; i++) {
        ctx->h[i] = ((uint64_t)tfa_sha2_h32[i] << 32) | prv_h0_lo[i];
    }
    ctx->total_len = 0;
    ctx->block_len = 0;
}

void tfa_sha512_update(tfa_sha512_ctx *ctx, const uint8_t *data, size_t len)
{
    if (len == 0) {
        return; /* data may be NULL for an empty update */
    }
    ctx->total_len += (uint64_t)len;
    if (ctx->block_len > 0) {
        size_t room = 128u - ctx->block_len;
        size_t take = len < room ? len : room;
        memcpy(ctx->block + ctx->block_len, data, take);
        ctx->block_len += (uint32_t)take;
        data += take;
        len -= take;
        if (ctx->block_len < 128u) {
            return;
        }
        prv_compress(ctx->h, ctx->block);
        ctx->block_len = 0;
    }
    while (len >= 128u) {
        prv_compress(ctx->h, data);
        data += 128;
        len -= 128u;
    }
    if (len > 0) {
        memcpy(ctx->block, data, len);
        ctx->block_len = (uint32_t)len;
    }
}

void tfa_sha512_final(tfa_sha512_ctx *ctx, uint8_t digest[64])
{
    /* The length field is 128 bits; byte counts fit in 64 bits, so the top 3 bits go in the high word. */
    uint64_t bit_len_hi = ctx->total_len >> 61;
    uint64_t bit_len_lo = ctx->total_len << 3;
    uint32_t n = ctx->block_len;

    ctx->block[n++] = 0x80u;
    if (n > 112u) {
        memset(ctx->block + n, 0, 128u - n);
        prv_compress(ctx->h, ctx->block);
        n = 0;
    }
    memset(ctx->block + n, 0, 112u - n);
    prv_store_be64(ctx->block + 112, bit_len_hi);
    prv_store_be64(ctx->block + 120, bit_len_lo);
    prv_compress(ctx->h, ctx->block);
    for (unsigned i = 0; i < 8u; i++) {
        prv_store_be64(digest + 8u * i, ctx->h[i]);
    }
    memset(ctx, 0, sizeof(*ctx));
}

void tfa_sha512(const uint8_t *data, size_t len, uint8_t digest[64])
{
    tfa_sha512_ctx ctx;
    tfa_sha512_init(&ctx);
    tfa_sha512_update(&ctx, data, len);
    tfa_sha512_final(&ctx, digest);
}
