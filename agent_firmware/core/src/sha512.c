/* SHA-512 per FIPS 180-4, used by Ed25519 (k = SHA-512(R || A || M)). Same structure as sha256.c:
 * rolling 16-word schedule to keep the stack small (128 bytes). On a 32-bit core the 64-bit rotates
 * compile to pairs of 32-bit shifts, which is acceptable for the few blocks a verify hashes. */
#include "tfa/sha512.h"

#include <string.h>

static const uint64_t prv_k[80] = {
    0x428A2F98D728AE22ull, 0x7137449123EF65CDull, 0xB5C0FBCFEC4D3B2Full, 0xE9B5DBA58189DBBCull,
    0x3956C25BF348B538ull, 0x59F111F1B605D019ull, 0x923F82A4AF194F9Bull, 0xAB1C5ED5DA6D8118ull,
    0xD807AA98A3030242ull, 0x12835B0145706FBEull, 0x243185BE4EE4B28Cull, 0x550C7DC3D5FFB4E2ull,
    0x72BE5D74F27B896Full, 0x80DEB1FE3B1696B1ull, 0x9BDC06A725C71235ull, 0xC19BF174CF692694ull,
    0xE49B69C19EF14AD2ull, 0xEFBE4786384F25E3ull, 0x0FC19DC68B8CD5B5ull, 0x240CA1CC77AC9C65ull,
    0x2DE92C6F592B0275ull, 0x4A7484AA6EA6E483ull, 0x5CB0A9DCBD41FBD4ull, 0x76F988DA831153B5ull,
    0x983E5152EE66DFABull, 0xA831C66D2DB43210ull, 0xB00327C898FB213Full, 0xBF597FC7BEEF0EE4ull,
    0xC6E00BF33DA88FC2ull, 0xD5A79147930AA725ull, 0x06CA6351E003826Full, 0x142929670A0E6E70ull,
    0x27B70A8546D22FFCull, 0x2E1B21385C26C926ull, 0x4D2C6DFC5AC42AEDull, 0x53380D139D95B3DFull,
    0x650A73548BAF63DEull, 0x766A0ABB3C77B2A8ull, 0x81C2C92E47EDAEE6ull, 0x92722C851482353Bull,
    0xA2BFE8A14CF10364ull, 0xA81A664BBC423001ull, 0xC24B8B70D0F89791ull, 0xC76C51A30654BE30ull,
    0xD192E819D6EF5218ull, 0xD69906245565A910ull, 0xF40E35855771202Aull, 0x106AA07032BBD1B8ull,
    0x19A4C116B8D2D0C8ull, 0x1E376C085141AB53ull, 0x2748774CDF8EEB99ull, 0x34B0BCB5E19B48A8ull,
    0x391C0CB3C5C95A63ull, 0x4ED8AA4AE3418ACBull, 0x5B9CCA4F7763E373ull, 0x682E6FF3D6B2B8A3ull,
    0x748F82EE5DEFB2FCull, 0x78A5636F43172F60ull, 0x84C87814A1F0AB72ull, 0x8CC702081A6439ECull,
    0x90BEFFFA23631E28ull, 0xA4506CEBDE82BDE9ull, 0xBEF9A3F7B2C67915ull, 0xC67178F2E372532Bull,
    0xCA273ECEEA26619Cull, 0xD186B8C721C0C207ull, 0xEADA7DD6CDE0EB1Eull, 0xF57D4F7FEE6ED178ull,
    0x06F067AA72176FBAull, 0x0A637DC5A2C898A6ull, 0x113F9804BEF90DAEull, 0x1B710B35131C471Bull,
    0x28DB77F523047D84ull, 0x32CAAB7B40C72493ull, 0x3C9EBE0A15C9BEBCull, 0x431D67C49C100D4Cull,
    0x4CC5D4BECB3E42B6ull, 0x597F299CFC657E2Aull, 0x5FCB6FAB3AD6FAECull, 0x6C44198C4A475817ull,
};

static const uint64_t prv_h0[8] = {
    0x6A09E667F3BCC908ull, 0xBB67AE8584CAA73Bull, 0x3C6EF372FE94F82Bull, 0xA54FF53A5F1D36F1ull,
    0x510E527FADE682D1ull, 0x9B05688C2B3E6C1Full, 0x1F83D9ABFB41BD6Bull, 0x5BE0CD19137E2179ull,
};

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
    uint64_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];

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
        uint64_t big_s1 = prv_rotr(e, 14) ^ prv_rotr(e, 18) ^ prv_rotr(e, 41);
        uint64_t ch = (e & f) ^ (~e & g);
        uint64_t t1 = hh + big_s1 + ch + prv_k[t] + wt;
        uint64_t big_s0 = prv_rotr(a, 28) ^ prv_rotr(a, 34) ^ prv_rotr(a, 39);
        uint64_t maj = (a & b) ^ (a & c) ^ (b & c);
        uint64_t t2 = big_s0 + maj;
        hh = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
    h[5] += f;
    h[6] += g;
    h[7] += hh;
}

void tfa_sha512_init(tfa_sha512_ctx *ctx)
{
    memcpy(ctx->h, prv_h0, sizeof(ctx->h));
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
