/* Private: the SHA-2 round and initial constants SHA-256 and SHA-512 share (FIPS 180-4 section 4.2).
 * SHA-512's K[t] (t < 64) and H0[i] have these as their high 32 bits; sha512.c stores only the rest. */
#ifndef TFA_SHA2_INTERNAL_H
#define TFA_SHA2_INTERNAL_H

#include <stdint.h>

extern const uint32_t tfa_sha2_k32[64]; /* SHA-256's K */
extern const uint32_t tfa_sha2_h32[8];  /* SHA-256's H0 */

#endif
