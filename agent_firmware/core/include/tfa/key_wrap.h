/* Content key unwrap for encrypted payloads (docs/PROTOCOL.md section 6).
 * wrap = eph_pub(32) || wrapped(32) || tag(16);
 * shared = X25519(device_private, eph_pub), refused when zero;
 * okm = HKDF-SHA256(salt = eph_pub || device_public, ikm = shared, info = "tinyfleet content key v1", 64);
 * tag must equal HMAC-SHA256(okm[32..63], wrapped || SHA-256(manifest))[0..15] (constant-time compare);
 * content_key = wrapped XOR okm[0..31]. */
#ifndef TFA_KEY_WRAP_H
#define TFA_KEY_WRAP_H

#include <stdint.h>

#include "tfa/manifest.h"

#define TFA_KEY_WRAP_SIZE 80u
#define TFA_CONTENT_KEY_SIZE 32u

/* Opens a wrap for this device and this signed manifest (its TFA_MANIFEST_SIZE bytes). The caller passes
 * the device's public key too (tfa_x25519_base of the private key, computed once) so that an unwrap costs
 * one scalar multiplication. Returns 0 with content_key set, or -TFA_ERR_KEY_UNWRAP (content_key zeroed)
 * when the shared secret is zero or the tag does not match. */
int tfa_key_unwrap(uint8_t content_key[TFA_CONTENT_KEY_SIZE], const uint8_t wrap[TFA_KEY_WRAP_SIZE],
                   const uint8_t device_private[32], const uint8_t device_public[32],
                   const uint8_t manifest[TFA_MANIFEST_SIZE]);

#endif
