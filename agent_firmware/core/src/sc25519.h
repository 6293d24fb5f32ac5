/* Private: scalars modulo the group order L = 2^252 + 27742317777372353535851937790883648493. */
#ifndef TFA_SC25519_H
#define TFA_SC25519_H

#include <stdint.h>

/* 1 if the 32-byte little-endian s is < L (canonical), else 0. */
int tfa_sc_is_canonical(const uint8_t s[32]);
/* out = x mod L for a 64-byte little-endian x (a SHA-512 digest). */
void tfa_sc_reduce64(uint8_t out[32], const uint8_t x[64]);

#endif
