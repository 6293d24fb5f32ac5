/* Ed25519 signature verification (RFC 8032, pure Ed25519), strict:
 * non-canonical S (S >= L) and non-canonical point encodings (y >= p) are rejected. */
#ifndef TFA_ED25519_H
#define TFA_ED25519_H

#include <stddef.h>
#include <stdint.h>

/* Returns 0 if sig is a valid signature of msg under public_key, -1 otherwise. */
int tfa_ed25519_verify(const uint8_t signature[64], const uint8_t public_key[32], const uint8_t *msg,
                       size_t msg_len);

#endif
