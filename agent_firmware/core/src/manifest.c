#include "tfa/manifest.h"

#include <stddef.h>
#include <string.h>

#include "le_bytes.h"
#include "tfa/ed25519.h"
#include "tfa/errors.h"
#include "tfa/runtime.h"

/* Byte offsets of the format version 1 fields (docs/PROTOCOL.md section 1.1). */
enum {
    PRV_OFF_MAGIC = 0,
    PRV_OFF_FORMAT = 4,
    PRV_OFF_HEADER_SIZE = 6,
    PRV_OFF_NAME = 8,
    PRV_OFF_VERSION = 40,
    PRV_OFF_RESERVED0 = 46,
    PRV_OFF_SEQUENCE = 48,
    PRV_OFF_SECURITY = 52,
    PRV_OFF_HW_CLASS = 56,
    PRV_OFF_MIN_RUNTIME = 60,
    PRV_OFF_ENCODING = 64,
    PRV_OFF_FLAGS = 65,
    PRV_OFF_RESERVED1 = 66,
    PRV_OFF_PAYLOAD_SIZE = 68,
    PRV_OFF_PAYLOAD_SHA = 72,
    PRV_OFF_MODEL_SIZE = 104,
    PRV_OFF_MODEL_SHA = 108,
    PRV_OFF_DELTA_BASE = 140,
    PRV_OFF_ARENA = 172,
    PRV_OFF_SEED = 176,
    PRV_OFF_SELFTEST_SHA = 180,
    PRV_OFF_CREATED_AT = 212,
    PRV_OFF_KEY_ID = 220,
    PRV_OFF_SIGNATURE = 228
};

#define PRV_NAME_FIELD 32u
#define PRV_MAX_SIZE 0x80000000u

static int prv_all_zero(const uint8_t *p, uint32_t len)
{
    uint8_t acc = 0;
    for (uint32_t i = 0; i < len; i++) {
        acc |= p[i];
    }
    return acc == 0u;
}

/* Well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF), as Python's strict decoder accepts. */
static int prv_utf8_ok(const uint8_t *s, uint32_t len)
{
    uint32_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        uint32_t extra;
        uint8_t lo = 0x80u;
        uint8_t hi = 0xBFu;
        if (c < 0x80u) {
            i++;
            continue;
        } else if (c >= 0xC2u && c <= 0xDFu) {
            extra = 1;
        } else if (c >= 0xE0u && c <= 0xEFu) {
            extra = 2;
            lo = c == 0xE0u ? 0xA0u : 0x80u;
            hi = c == 0xEDu ? 0x9Fu : 0xBFu;
        } else if (c >= 0xF0u && c <= 0xF4u) {
            extra = 3;
            lo = c == 0xF0u ? 0x90u : 0x80u;
            hi = c == 0xF4u ? 0x8Fu : 0xBFu;
        } else {
            return 0;
        }
        if (len - i <= extra) {
            return 0;
        }
        /* Only the first continuation byte has the narrowed range. */
        if (s[i + 1u] < lo || s[i + 1u] > hi) {
            return 0;
        }
        for (uint32_t k = 2; k <= extra; k++) {
            if (s[i + k] < 0x80u || s[i + k] > 0xBFu) {
                return 0;
            }
        }
        i += extra + 1u;
    }
    return 1;
}

/* model_name: 1..31 bytes of UTF-8, then NUL padding to the end of the field. */
static int prv_name_ok(const uint8_t field[PRV_NAME_FIELD])
{
    uint32_t len = 0;
    while (len < PRV_NAME_FIELD && field[len] != 0u) {
        len++;
    }
    if (len == 0u || len >= PRV_NAME_FIELD) {
        return 0;
    }
    return prv_all_zero(field + len, PRV_NAME_FIELD - len) && prv_utf8_ok(field, len);
}

static int prv_ranges_ok(const uint8_t *b)
{
    uint8_t encoding = b[PRV_OFF_ENCODING];
    uint32_t payload_size = tfa_get_le32(b + PRV_OFF_PAYLOAD_SIZE);
    uint32_t model_size = tfa_get_le32(b + PRV_OFF_MODEL_SIZE);
    int has_base = !prv_all_zero(b + PRV_OFF_DELTA_BASE, 32);
    uint8_t flags = b[PRV_OFF_FLAGS];
    if (tfa_get_le16(b + PRV_OFF_RESERVED0) != 0u || (flags & ~TFA_MANIFEST_FLAG_ENCRYPTED) != 0u ||
        tfa_get_le16(b + PRV_OFF_RESERVED1) != 0u || encoding > TFA_ENC_DELTA) {
        return 0;
    }
    if (!prv_name_ok(b + PRV_OFF_NAME)) {
        return 0;
    }
    if (payload_size == 0u || payload_size > PRV_MAX_SIZE || model_size == 0u || model_size > PRV_MAX_SIZE) {
        return 0;
    }
    if (has_base != (encoding == TFA_ENC_DELTA)) {
        return 0;
    }
    if (tfa_get_le32(b + PRV_OFF_SEED) == 0u && !prv_all_zero(b + PRV_OFF_SELFTEST_SHA, 32)) {
        return 0;
    }
    /* An encrypted raw payload is the model's ciphertext: same size, its own digest. */
    if (encoding == TFA_ENC_RAW &&
        (payload_size != model_size || ((flags & TFA_MANIFEST_FLAG_ENCRYPTED) == 0u &&
                                        memcmp(b + PRV_OFF_PAYLOAD_SHA, b + PRV_OFF_MODEL_SHA, 32) != 0))) {
        return 0;
    }
    return 1;
}

/* Whether tfa_manifest_t holds the wire's bytes 8..211 at 0..203 and 212..291 from created_at on (true of
 * the ARM EABI and x86-64 layouts): on a little-endian target prv_fill is then two copies, 208 B less
 * flash on the M4 than field by field. Struct padding receives the two reserved fields, which
 * prv_ranges_ok checked to be zero, so a filled manifest still compares with memcmp.
 * tests/test_manifest_fill.c checks the field-by-field form against this one. */
#define PRV_HEAD(field, wire) (offsetof(tfa_manifest_t, field) + PRV_OFF_NAME == (wire))
#define PRV_TAIL(field, wire) \
    (offsetof(tfa_manifest_t, field) - offsetof(tfa_manifest_t, created_at) + PRV_OFF_CREATED_AT == (wire))
#define PRV_WIRE_LAYOUT                                                                                   \
    (TFA_LE_NATIVE && PRV_HEAD(model_name, PRV_OFF_NAME) && PRV_HEAD(version, PRV_OFF_VERSION) &&        \
     PRV_HEAD(sequence, PRV_OFF_SEQUENCE) && PRV_HEAD(security_counter, PRV_OFF_SECURITY) &&             \
     PRV_HEAD(hardware_class, PRV_OFF_HW_CLASS) && PRV_HEAD(min_runtime_version, PRV_OFF_MIN_RUNTIME) && \
     PRV_HEAD(payload_encoding, PRV_OFF_ENCODING) && PRV_HEAD(flags, PRV_OFF_FLAGS) &&                   \
     PRV_HEAD(payload_size, PRV_OFF_PAYLOAD_SIZE) && PRV_HEAD(payload_sha256, PRV_OFF_PAYLOAD_SHA) &&    \
     PRV_HEAD(model_size, PRV_OFF_MODEL_SIZE) && PRV_HEAD(model_sha256, PRV_OFF_MODEL_SHA) &&            \
     PRV_HEAD(delta_base_sha256, PRV_OFF_DELTA_BASE) && PRV_HEAD(arena_bytes, PRV_OFF_ARENA) &&          \
     PRV_HEAD(selftest_seed, PRV_OFF_SEED) && PRV_HEAD(selftest_output_sha256, PRV_OFF_SELFTEST_SHA) &&  \
     PRV_TAIL(key_id, PRV_OFF_KEY_ID) && PRV_TAIL(signature, PRV_OFF_SIGNATURE) &&                       \
     sizeof(tfa_manifest_t) - offsetof(tfa_manifest_t, created_at) + PRV_OFF_CREATED_AT == TFA_MANIFEST_SIZE)

static void prv_fill(const uint8_t *b, tfa_manifest_t *out)
{
    memset(out, 0, sizeof(*out));
    if (PRV_WIRE_LAYOUT) {
        memcpy(out, b + PRV_OFF_NAME, PRV_OFF_CREATED_AT - PRV_OFF_NAME);
        memcpy(&out->created_at, b + PRV_OFF_CREATED_AT, TFA_MANIFEST_SIZE - PRV_OFF_CREATED_AT);
        return;
    }
    memcpy(out->model_name, b + PRV_OFF_NAME, PRV_NAME_FIELD);
    for (uint32_t i = 0; i < 3u; i++) {
        out->version[i] = tfa_get_le16(b + PRV_OFF_VERSION + 2u * i);
    }
    out->sequence = tfa_get_le32(b + PRV_OFF_SEQUENCE);
    out->security_counter = tfa_get_le32(b + PRV_OFF_SECURITY);
    out->hardware_class = tfa_get_le32(b + PRV_OFF_HW_CLASS);
    out->min_runtime_version = tfa_get_le32(b + PRV_OFF_MIN_RUNTIME);
    out->payload_encoding = b[PRV_OFF_ENCODING];
    out->flags = b[PRV_OFF_FLAGS];
    out->payload_size = tfa_get_le32(b + PRV_OFF_PAYLOAD_SIZE);
    memcpy(out->payload_sha256, b + PRV_OFF_PAYLOAD_SHA, 32);
    out->model_size = tfa_get_le32(b + PRV_OFF_MODEL_SIZE);
    memcpy(out->model_sha256, b + PRV_OFF_MODEL_SHA, 32);
    memcpy(out->delta_base_sha256, b + PRV_OFF_DELTA_BASE, 32);
    out->arena_bytes = tfa_get_le32(b + PRV_OFF_ARENA);
    out->selftest_seed = tfa_get_le32(b + PRV_OFF_SEED);
    memcpy(out->selftest_output_sha256, b + PRV_OFF_SELFTEST_SHA, 32);
    out->created_at = (uint64_t)tfa_get_le32(b + PRV_OFF_CREATED_AT) |
                      ((uint64_t)tfa_get_le32(b + PRV_OFF_CREATED_AT + 4u) << 32);
    memcpy(out->key_id, b + PRV_OFF_KEY_ID, 8);
    memcpy(out->signature, b + PRV_OFF_SIGNATURE, 64);
}

int tfa_manifest_parse(const uint8_t *buf, uint32_t len, const struct tfa_trusted_key *keys,
                       uint32_t key_count, tfa_manifest_t *out)
{
    if (buf == NULL || out == NULL || len < 8u) {
        return -TFA_ERR_TRUNCATED;
    }
    if (memcmp(buf + PRV_OFF_MAGIC, "TFMF", 4) != 0) {
        return -TFA_ERR_BAD_MAGIC;
    }
    if (tfa_get_le16(buf + PRV_OFF_FORMAT) != TFA_MANIFEST_FORMAT) {
        return -TFA_ERR_UNSUPPORTED_FORMAT;
    }
    /* Format 1 fixes the layout: any other header size is not a format this parser knows. */
    if (tfa_get_le16(buf + PRV_OFF_HEADER_SIZE) != TFA_MANIFEST_SIZE) {
        return -TFA_ERR_UNSUPPORTED_FORMAT;
    }
    if (len < TFA_MANIFEST_SIZE) {
        return -TFA_ERR_TRUNCATED;
    }
    const tfa_trusted_key_t *key = NULL;
    for (uint32_t i = 0; keys != NULL && i < key_count; i++) {
        if (memcmp(keys[i].key_id, buf + PRV_OFF_KEY_ID, 8) == 0) {
            key = &keys[i];
            break;
        }
    }
    if (key == NULL) {
        return -TFA_ERR_UNKNOWN_KEY;
    }
    if (tfa_ed25519_verify(buf + PRV_OFF_SIGNATURE, key->public_key, buf, TFA_MANIFEST_SIGNED_SIZE) != 0) {
        return -TFA_ERR_BAD_SIGNATURE;
    }
    if (!prv_ranges_ok(buf)) {
        return -TFA_ERR_FIELD_RANGE;
    }
    prv_fill(buf, out);
    return 0;
}
