/* Content key unwrap (PROTOCOL section 6): X25519 with the wrap's ephemeral key, HKDF-SHA256 to a key
 * encryption key and a MAC key, then the tag over the wrapped key and the manifest digest, checked in
 * constant time before the key is released. */
#include "tfa/key_wrap.h"

#include <string.h>

#include "tfa/errors.h"
#include "tfa/kdf.h"
#include "tfa/sha256.h"
#include "tfa/x25519.h"

static const uint8_t prv_info[] = "tinyfleet content key v1";

int tfa_key_unwrap(uint8_t content_key[TFA_CONTENT_KEY_SIZE], const uint8_t wrap[TFA_KEY_WRAP_SIZE],
                   const uint8_t device_private[32], const uint8_t device_public[32],
                   const uint8_t manifest[TFA_MANIFEST_SIZE])
{
    const uint8_t *eph_pub = wrap;
    const uint8_t *wrapped = wrap + 32;
    const uint8_t *tag = wrap + 64;
    uint8_t shared[32];
    uint8_t salt[64];
    uint8_t okm[64];
    uint8_t digest[32];
    uint8_t mac[32];
    int ok = tfa_x25519(shared, device_private, eph_pub) == 0;
    memcpy(salt, eph_pub, 32);
    memcpy(salt + 32, device_public, 32);
    /* Derived even for a zero secret so that both refusals take the same path. */
    (void)tfa_hkdf_sha256(okm, sizeof(okm), salt, sizeof(salt), shared, sizeof(shared), prv_info,
                          sizeof(prv_info) - 1u);
    tfa_sha256(manifest, TFA_MANIFEST_SIZE, digest);
    tfa_hmac_sha256_ctx ctx;
    tfa_hmac_sha256_init(&ctx, okm + 32, 32);
    tfa_hmac_sha256_update(&ctx, wrapped, 32);
    tfa_hmac_sha256_update(&ctx, digest, sizeof(digest));
    tfa_hmac_sha256_final(&ctx, mac);
    ok &= tfa_ct_equal(mac, tag, 16);
    for (unsigned i = 0; i < TFA_CONTENT_KEY_SIZE; i++) {
        content_key[i] = ok ? (uint8_t)(wrapped[i] ^ okm[i]) : 0u;
    }
    tfa_wipe(shared, sizeof(shared));
    tfa_wipe(okm, sizeof(okm));
    tfa_wipe(mac, sizeof(mac));
    return ok ? 0 : -TFA_ERR_KEY_UNWRAP;
}
