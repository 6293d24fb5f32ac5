/* ChaCha20 stream cipher (RFC 8439: 256-bit key, 96-bit nonce, 32-bit block counter), streaming and
 * seekable to any byte offset, so that an install resumed mid-payload continues the key stream. */
#ifndef TFA_CHACHA20_H
#define TFA_CHACHA20_H

#include <stddef.h>
#include <stdint.h>

typedef struct tfa_chacha20_ctx {
    uint32_t input[16];     /* constants, key, counter, nonce */
    uint8_t stream[64];     /* key stream of block offset / 64, when used < 64 */
    uint64_t offset;        /* key stream bytes consumed since init (or the seek target) */
    uint32_t used;          /* bytes of `stream` consumed; 64 = the next byte starts a new block */
    uint32_t first_counter; /* the counter given at init: block of offset 0 */
} tfa_chacha20_ctx;

/* Key stream starts at block `counter` (offset 0 = the first byte of that block). */
void tfa_chacha20_init(tfa_chacha20_ctx *ctx, const uint8_t key[32], const uint8_t nonce[12], uint32_t counter);

/* Moves to byte `offset` of the key stream (from the init counter). Returns 0, or -1 when the offset is
 * past the 2^32-block limit of the counter (the context is then unchanged). */
int tfa_chacha20_seek(tfa_chacha20_ctx *ctx, uint64_t offset);

/* out[i] = in[i] XOR the next len key stream bytes; out may equal in. Returns 0, or -1 (nothing written)
 * when the counter would pass its last block. */
int tfa_chacha20_xor(tfa_chacha20_ctx *ctx, uint8_t *out, const uint8_t *in, size_t len);

/* Clears the key material. */
void tfa_chacha20_wipe(tfa_chacha20_ctx *ctx);

#endif
