/* ChaCha20 (RFC 8439 section 2.3-2.4): 20 rounds over a 4x4 word state, one 64-byte block per counter
 * value. The context keeps the current block's key stream so that any split of the data gives the same
 * bytes, and seek recomputes one block so that a resumed install needs no stored stream state. */
#include "tfa/chacha20.h"

#include <string.h>

#include "tfa/kdf.h"

static uint32_t prv_load32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static void prv_store32(uint8_t *p, uint32_t w)
{
    p[0] = (uint8_t)w;
    p[1] = (uint8_t)(w >> 8);
    p[2] = (uint8_t)(w >> 16);
    p[3] = (uint8_t)(w >> 24);
}

static uint32_t prv_rotl(uint32_t x, unsigned n)
{
    return (x << n) | (x >> (32u - n));
}

#define QR(a, b, c, d)                \
    do {                              \
        a += b;                       \
        d = prv_rotl(d ^ a, 16);      \
        c += d;                       \
        b = prv_rotl(b ^ c, 12);      \
        a += b;                       \
        d = prv_rotl(d ^ a, 8);       \
        c += d;                       \
        b = prv_rotl(b ^ c, 7);       \
    } while (0)

/* The key stream block for the counter in input[12]. */
static void prv_block(const uint32_t in[16], uint8_t out[64])
{
    uint32_t x[16];
    /* word by word: a memcpy call here (libc_small's byte loop on the M4) cost 13% of a block */
    for (unsigned i = 0; i < 16u; i += 4u) {
        x[i] = in[i];
        x[i + 1u] = in[i + 1u];
        x[i + 2u] = in[i + 2u];
        x[i + 3u] = in[i + 3u];
    }
    for (unsigned i = 0; i < 10u; i++) {
        QR(x[0], x[4], x[8], x[12]);
        QR(x[1], x[5], x[9], x[13]);
        QR(x[2], x[6], x[10], x[14]);
        QR(x[3], x[7], x[11], x[15]);
        QR(x[0], x[5], x[10], x[15]);
        QR(x[1], x[6], x[11], x[12]);
        QR(x[2], x[7], x[8], x[13]);
        QR(x[3], x[4], x[9], x[14]);
    }
    for (unsigned i = 0; i < 16u; i++) {
        prv_store32(out + 4u * i, x[i] + in[i]);
    }
    /* x and the key stream together give the key: clear it, a word at a time (bytes cost 12% of a block) */
    volatile uint32_t *wipe = x;
    for (unsigned i = 0; i < 16u; i++) {
        wipe[i] = 0;
    }
}

void tfa_chacha20_init(tfa_chacha20_ctx *ctx, const uint8_t key[32], const uint8_t nonce[12], uint32_t counter)
{
    ctx->input[0] = 0x61707865u; /* "expand 32-byte k" */
    ctx->input[1] = 0x3320646eu;
    ctx->input[2] = 0x79622d32u;
    ctx->input[3] = 0x6b206574u;
    for (unsigned i = 0; i < 8u; i++) {
        ctx->input[4u + i] = prv_load32(key + 4u * i);
    }
    ctx->input[12] = counter;
    for (unsigned i = 0; i < 3u; i++) {
        ctx->input[13u + i] = prv_load32(nonce + 4u * i);
    }
    memset(ctx->stream, 0, sizeof(ctx->stream));
    ctx->offset = 0;
    ctx->used = 64u;
    ctx->first_counter = counter;
}

/* 1 when key stream bytes up to (not including) `end` exist: their blocks stay at counter <= 2^32 - 1. */
static int prv_within(const tfa_chacha20_ctx *ctx, uint64_t end)
{
    uint64_t blocks = (end + 63u) / 64u;
    return blocks <= ((uint64_t)1 << 32) - ctx->first_counter;
}

static void prv_load_block(tfa_chacha20_ctx *ctx)
{
    ctx->input[12] = ctx->first_counter + (uint32_t)(ctx->offset / 64u);
    prv_block(ctx->input, ctx->stream);
}

int tfa_chacha20_seek(tfa_chacha20_ctx *ctx, uint64_t offset)
{
    if (!prv_within(ctx, offset)) {
        return -1;
    }
    ctx->offset = offset;
    ctx->used = (uint32_t)(offset % 64u);
    if (ctx->used == 0u) {
        ctx->used = 64u; /* generated when the first byte is asked for */
    } else {
        uint32_t used = ctx->used;
        ctx->offset -= used;
        prv_load_block(ctx);
        ctx->offset += used;
    }
    return 0;
}

int tfa_chacha20_xor(tfa_chacha20_ctx *ctx, uint8_t *out, const uint8_t *in, size_t len)
{
    uint64_t end = ctx->offset + (uint64_t)len;
    if (end < ctx->offset || !prv_within(ctx, end)) {
        return -1;
    }
    while (len > 0u) {
        if (ctx->used == 64u) {
            prv_load_block(ctx);
            ctx->used = 0;
        }
        size_t n = 64u - ctx->used;
        if (n > len) {
            n = len;
        }
        const uint8_t *ks = ctx->stream + ctx->used;
        size_t i = 0;
        /* four bytes at a time: the byte loads and stores merge into word accesses on the M4 */
        for (; i + 4u <= n; i += 4u) {
            prv_store32(out + i, prv_load32(in + i) ^ prv_load32(ks + i));
        }
        for (; i < n; i++) {
            out[i] = (uint8_t)(in[i] ^ ks[i]);
        }
        ctx->used += (uint32_t)n;
        ctx->offset += n;
        out += n;
        in += n;
        len -= n;
    }
    return 0;
}

void tfa_chacha20_wipe(tfa_chacha20_ctx *ctx)
{
    tfa_wipe(ctx, sizeof(*ctx));
}
