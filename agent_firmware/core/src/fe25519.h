/* Private: arithmetic in GF(2^255 - 19) for Ed25519 verification.
 *
 * Representation: 10 unsigned 32-bit limbs in radix 2^25.5 (limb i holds bits ceil(25.5*i) onwards,
 * alternately 26 and 25 bits wide). Why: the Cortex-M4 has a single-cycle 32x32->64 multiply-accumulate
 * (UMLAL), so a 10x10 limb product is 100 UMLALs into 64-bit column sums with headroom to spare, and
 * nothing needs 64x64 products or 128-bit types. Limbs are unsigned so no step shifts a negative value
 * (UBSan-clean); subtraction adds 2p first.
 *
 * Invariant ("carried"): every fe produced by these functions has even limbs < 2^26 and odd limbs
 * < 2^25, except limb 1 which may exceed 2^25 by less than 2^16. Inputs must satisfy it as well. The
 * value is then below 2p but not necessarily canonical; tfa_fe_tobytes() fully reduces. */
#ifndef TFA_FE25519_H
#define TFA_FE25519_H

#include <stdint.h>

typedef struct {
    uint32_t v[10];
} tfa_fe;

extern const tfa_fe tfa_fe_d;      /* d = -121665/121666 */
extern const tfa_fe tfa_fe_d2;     /* 2d */
extern const tfa_fe tfa_fe_sqrtm1; /* sqrt(-1) = 2^((p-1)/4) */

void tfa_fe_zero(tfa_fe *h);
void tfa_fe_one(tfa_fe *h);
/* Loads 255 bits little-endian; bit 255 is ignored. Any 255-bit value (even >= p) is accepted. */
void tfa_fe_frombytes(tfa_fe *h, const uint8_t s[32]);
/* Writes the canonical (fully reduced) little-endian encoding. */
void tfa_fe_tobytes(uint8_t s[32], const tfa_fe *f);
void tfa_fe_add(tfa_fe *h, const tfa_fe *f, const tfa_fe *g);
void tfa_fe_sub(tfa_fe *h, const tfa_fe *f, const tfa_fe *g);
void tfa_fe_neg(tfa_fe *h, const tfa_fe *f);
void tfa_fe_mul(tfa_fe *h, const tfa_fe *f, const tfa_fe *g);
void tfa_fe_sq(tfa_fe *h, const tfa_fe *f);
/* h = f^((p-5)/8) = f^(2^252 - 3), the exponent used by the square-root step of decompression. */
void tfa_fe_pow22523(tfa_fe *h, const tfa_fe *f);
/* h = 1/f (f^(p-2)); 0 maps to 0. Not used by verification itself (it compares projectively). */
void tfa_fe_invert(tfa_fe *h, const tfa_fe *f);
/* 1 if f == 0 mod p, else 0. */
int tfa_fe_iszero(const tfa_fe *f);
/* 1 if f == g mod p, else 0. */
int tfa_fe_equal(const tfa_fe *f, const tfa_fe *g);
/* Low bit of the canonical encoding ("negative" in RFC 8032 terms). */
int tfa_fe_isodd(const tfa_fe *f);

#endif
