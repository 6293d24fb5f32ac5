/* Ed25519 verification (RFC 8032 section 5.1.7), strict variant:
 *   - S must be canonical (S < L), else reject (blocks the S + L malleability);
 *   - A and R must be canonical encodings (y < p) of points on the curve;
 *   - A and R must not be of small order (their [8] multiple is not the identity), so a torsion
 *     public key cannot validate arbitrary messages;
 *   - accept iff [S]B - [k]A == R with k = SHA-512(R || A || M) mod L (cofactorless equation,
 *     compared in projective coordinates: no field inversion needed).
 * Everything here handles public data, so nothing tries to be constant time.
 * Memory: no heap. Stack on a Cortex-M4 (-Os, -fstack-usage): 3.4 KB on the deepest path, 2.4 KB of it
 * in tfa_ge_double_scalarmult_vartime (two 256-digit wNAFs and 8 cached multiples of -A). */
#include "tfa/ed25519.h"

#include "ge25519.h"
#include "sc25519.h"
#include "tfa/sha512.h"

/* Kept out of line so that the hash context (about 300 bytes) is not part of the caller's frame while
 * the point multiplication runs deeper down the stack. */
#if defined(__GNUC__)
#define PRV_NOINLINE __attribute__((noinline))
#else
#define PRV_NOINLINE
#endif

/* k = SHA-512(R || A || M) mod L. */
static PRV_NOINLINE void prv_challenge(uint8_t k[32], const uint8_t r_bytes[32], const uint8_t public_key[32],
                          const uint8_t *msg, size_t msg_len)
{
    uint8_t digest[64];
    tfa_sha512_ctx ctx;
    tfa_sha512_init(&ctx);
    tfa_sha512_update(&ctx, r_bytes, 32);
    tfa_sha512_update(&ctx, public_key, 32);
    tfa_sha512_update(&ctx, msg, msg_len);
    tfa_sha512_final(&ctx, digest);
    tfa_sc_reduce64(k, digest);
}

/* Decodes A and R and checks [S]B - [k]A == R. */
static int prv_check_equation(const uint8_t r_bytes[32], const uint8_t s_bytes[32],
                              const uint8_t public_key[32], const uint8_t k[32])
{
    tfa_ge_p3 a;
    tfa_ge_p3 r;
    tfa_ge_p2 check;
    if (tfa_ge_frombytes(&a, public_key) != 0 || tfa_ge_has_small_order(&a)) {
        return -1;
    }
    if (tfa_ge_frombytes(&r, r_bytes) != 0 || tfa_ge_has_small_order(&r)) {
        return -1;
    }
    tfa_ge_p3_neg(&a, &a); /* [S]B + [k](-A) */
    tfa_ge_double_scalarmult_vartime(&check, k, &a, s_bytes);
    return tfa_ge_p2_equals_affine(&check, &r) ? 0 : -1;
}

int tfa_ed25519_verify(const uint8_t signature[64], const uint8_t public_key[32], const uint8_t *msg,
                       size_t msg_len)
{
    const uint8_t *r_bytes = signature;
    const uint8_t *s_bytes = signature + 32;
    if (!tfa_sc_is_canonical(s_bytes)) {
        return -1;
    }
    /* Hash first, then decode: the hash context and the points are never on the stack together (a
     * rejected point costs one needless SHA-512, small next to the point arithmetic). */
    uint8_t k[32];
    prv_challenge(k, r_bytes, public_key, msg, msg_len);
    return prv_check_equation(r_bytes, s_bytes, public_key, k);
}
