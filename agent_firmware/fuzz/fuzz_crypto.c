/* libFuzzer harness: the payload encryption core on untrusted bytes. Input: device private key (32),
 * content key wrap (80), manifest (292), zero-padded when short; the same bytes drive X25519 and a
 * ChaCha20 stream. Checks: an unwrap answers 0 or KEY_UNWRAP and a refusal leaves no key bytes; X25519
 * reports -1 exactly for an all-zero result; ChaCha20 gives the same bytes in one call, split in two, and
 * resumed by a seek; HMAC/HKDF take any lengths. */
#include <stdio.h>

#include "fuzz_common.h"
#include "tfa/chacha20.h"
#include "tfa/errors.h"
#include "tfa/kdf.h"
#include "tfa/key_wrap.h"
#include "tfa/x25519.h"

enum { IN = 32 + TFA_KEY_WRAP_SIZE + TFA_MANIFEST_SIZE, STREAM = 600 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t in[IN];
    memset(in, 0, sizeof(in));
    memcpy(in, data, size < IN ? size : IN);
    const uint8_t *device = in, *wrap = in + 32, *manifest = in + 32 + TFA_KEY_WRAP_SIZE;

    uint8_t pub[32], key[32];
    tfa_x25519_base(pub, device);
    memset(key, 0xA5, sizeof(key));
    int rc = tfa_key_unwrap(key, wrap, device, pub, manifest);
    if (rc != 0 && rc != -TFA_ERR_KEY_UNWRAP) {
        abort();
    }
    if (rc != 0) {
        for (unsigned i = 0; i < 32u; i++) {
            if (key[i] != 0u) {
                abort(); /* a refused wrap must not leave key bytes */
            }
        }
    }

    uint8_t shared[32];
    uint8_t any = 0;
    rc = tfa_x25519(shared, device, wrap);
    for (unsigned i = 0; i < 32u; i++) {
        any |= shared[i];
    }
    if ((rc == -1) != (any == 0u)) {
        abort();
    }

    /* ChaCha20: key = device bytes, nonce = wrap[0..11], counter = wrap[12..15], data = the input itself */
    static uint8_t once[STREAM], split[STREAM], seeked[STREAM];
    size_t len = size < STREAM ? size : STREAM;
    size_t cut = len == 0u ? 0u : wrap[16] % (len + 1u);
    uint32_t counter = (uint32_t)wrap[12] | ((uint32_t)wrap[13] << 8) | ((uint32_t)wrap[14] << 16) |
                       ((uint32_t)wrap[15] << 24);
    tfa_chacha20_ctx c;
    tfa_chacha20_init(&c, device, wrap, counter);
    int r1 = tfa_chacha20_xor(&c, once, data, len);
    tfa_chacha20_init(&c, device, wrap, counter);
    int r2 = tfa_chacha20_xor(&c, split, data, cut);
    if (r2 == 0) {
        r2 = tfa_chacha20_xor(&c, split + cut, data + cut, len - cut);
    }
    if (r1 != r2 || (r1 == 0 && memcmp(once, split, len) != 0)) {
        abort();
    }
    tfa_chacha20_init(&c, device, wrap, counter);
    if (r1 == 0) {
        if (tfa_chacha20_seek(&c, cut) != 0 || tfa_chacha20_xor(&c, seeked + cut, data + cut, len - cut) != 0 ||
            memcmp(once + cut, seeked + cut, len - cut) != 0) {
            abort();
        }
    }

    uint8_t okm[96];
    uint8_t mac[32];
    tfa_hmac_sha256(data, size, manifest, size % (TFA_MANIFEST_SIZE + 1u), mac);
    if (tfa_hkdf_sha256(okm, 1u + size % sizeof(okm), wrap, size % 65u, data, size, manifest, 24) != 0) {
        abort();
    }
    return 0;
}
