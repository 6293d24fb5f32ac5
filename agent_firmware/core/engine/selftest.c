/* Manifest self-test (docs/PROTOCOL.md 1.2): xorshift32 input bytes from the seed, one inference,
 * SHA-256 of the first output tensor. */
#include <string.h>

#include "tfa/engine.h"
#include "tfa/errors.h"
#include "tfa/sha256.h"

/* The stream continues across input tensors, so every input gets distinct bytes. */
static uint32_t prv_fill(uint32_t s, uint8_t *data, uint32_t len)
{
    for (uint32_t i = 0; i < len; i++) {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        data[i] = (uint8_t)(s & 0xFFu);
    }
    return s;
}

void tfa_engine_selftest_input(uint32_t seed, uint8_t *data, uint32_t len)
{
    (void)prv_fill(seed, data, len);
}

int tfa_engine_selftest_digest(tfa_engine_t *e, uint32_t seed, uint8_t digest[32])
{
    uint32_t s = seed;
    if (e == NULL || !e->ready) {
        return -TFA_ERR_BAD_STATE;
    }
    /* the digest is of one inference on a fresh model: state (SVDF) from earlier runs is cleared */
    (void)tfa_engine_reset(e);
    for (uint32_t i = 0; i < e->input_count; i++) {
        uint8_t *in;
        uint32_t bytes;
        int rc = tfa_engine_input(e, i, &in, &bytes);
        if (rc != 0) {
            return rc;
        }
        s = prv_fill(s, in, bytes);
    }
    int rc = tfa_engine_invoke(e);
    if (rc != 0) {
        return rc;
    }
    const uint8_t *out;
    uint32_t out_bytes;
    rc = tfa_engine_output(e, 0, &out, &out_bytes);
    if (rc != 0) {
        return rc;
    }
    tfa_sha256(out, out_bytes, digest);
    return 0;
}

int tfa_engine_selftest_hook(void *ctx, const tfa_manifest_t *manifest, const uint8_t *model,
                             uint32_t model_len)
{
    tfa_engine_selftest_ctx_t *c = ctx;
    uint8_t digest[32];
    if (c == NULL || c->engine == NULL || manifest == NULL) {
        return -TFA_ERR_BAD_STATE;
    }
    if (manifest->selftest_seed == 0) {
        return 0;
    }
    int rc = tfa_engine_init(c->engine, model, model_len, c->arena, c->arena_size);
    rc = rc ? rc : tfa_engine_selftest_digest(c->engine, manifest->selftest_seed, digest);
    if (rc != 0) {
        return rc;
    }
    return memcmp(digest, manifest->selftest_output_sha256, 32) == 0 ? 0 : -TFA_ERR_SELFTEST_FAILED;
}
