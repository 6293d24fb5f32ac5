#include "provision.h"

#include <string.h>

#include "tfa/crc32.h"
#include "tfa/errors.h"
#include "tfa/sha256.h"

static uint32_t prv_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static uint16_t prv_le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static int prv_parse(const uint8_t *rec, uint32_t len, provision_t *out)
{
    if (len < PROVISION_HEADER_SIZE) {
        return -TFA_ERR_TRUNCATED;
    }
    if (memcmp(rec, PROVISION_MAGIC, 4) != 0) {
        return -TFA_ERR_BAD_MAGIC;
    }
    uint32_t key_count = prv_le16(rec + 6);
    uint32_t format = prv_le16(rec + 4);
    uint32_t keyed = format == PROVISION_FORMAT_KEYED; /* format 2: flags in byte 21 */
    if ((format != PROVISION_FORMAT && !keyed) || key_count == 0u || key_count > PROVISION_MAX_KEYS ||
        (rec[21] & ~(keyed * 3u)) != 0u || rec[22] != 0u || rec[23] != 0u) {
        return -TFA_ERR_FIELD_RANGE;
    }
    uint32_t keys_end = PROVISION_HEADER_SIZE + key_count * PROVISION_KEY_SIZE;
    uint32_t body = keys_end + (rec[21] & PROVISION_FLAG_ENCRYPTION_KEY) * 32u;
    if (len < body + 4u) {
        return -TFA_ERR_TRUNCATED;
    }
    if (tfa_crc32(0, rec, body) != prv_le32(rec + body)) {
        return -TFA_ERR_DIGEST_MISMATCH;
    }
    out->hardware_class = prv_le32(rec + 8);
    out->ram_budget = prv_le32(rec + 12);
    out->slot_size = prv_le32(rec + 16);
    out->max_trial_boots = rec[20];
    for (uint32_t i = 0; i < key_count; i++) {
        const uint8_t *k = rec + PROVISION_HEADER_SIZE + i * PROVISION_KEY_SIZE;
        uint8_t digest[32];
        tfa_sha256(k + 8, 32, digest);
        if (memcmp(digest, k, 8) != 0) {
            return -TFA_ERR_DIGEST_MISMATCH;
        }
        memcpy(out->keys[i].key_id, k, 8);
        memcpy(out->keys[i].public_key, k + 8, 32);
    }
    out->key_count = key_count;
#ifndef TFA_NO_ENCRYPTION
    out->flags = rec[21];
    if (body != keys_end) {
        memcpy(out->encryption_key, rec + keys_end, 32);
    }
#endif
    return 0;
}

int provision_parse(const uint8_t *rec, uint32_t len, provision_t *out)
{
    memset(out, 0, sizeof(*out));
    int err = prv_parse(rec, len, out);
    if (err != 0) {
        memset(out, 0, sizeof(*out));
    }
    return err;
}
