/* X25519 Diffie-Hellman (RFC 7748) on Curve25519, reusing the GF(2^255 - 19) arithmetic of Ed25519.
 * Constant time in the scalar: a Montgomery ladder with masked swaps and branch-free field operations. */
#ifndef TFA_X25519_H
#define TFA_X25519_H

#include <stdint.h>

/* out = X25519(scalar, u): the scalar is clamped, the top bit of u ignored (RFC 7748 section 5).
 * Returns 0, or -1 when the result is all zero (u of low order); out is written either way. */
int tfa_x25519(uint8_t out[32], const uint8_t scalar[32], const uint8_t u[32]);

/* The public key of a private scalar: X25519(scalar, 9). */
void tfa_x25519_base(uint8_t public_key[32], const uint8_t scalar[32]);

#endif
