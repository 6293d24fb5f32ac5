/* Manifest format version 1 (docs/PROTOCOL.md section 1.1), parsed in place without allocation. */
#ifndef TFA_MANIFEST_H
#define TFA_MANIFEST_H

#include <stdint.h>

#define TFA_MANIFEST_SIZE 292u
#define TFA_MANIFEST_SIGNED_SIZE 228u
#define TFA_MANIFEST_FORMAT 1u

enum { TFA_ENC_RAW = 0, TFA_ENC_COMPRESSED = 1, TFA_ENC_DELTA = 2 };

/* flags bit 0: the payload is ChaCha20-encrypted (PROTOCOL section 6); the other bits must be 0. */
#define TFA_MANIFEST_FLAG_ENCRYPTED 0x01u

typedef struct tfa_manifest {
    char model_name[32];            /* NUL-terminated */
    uint16_t version[3];            /* major, minor, patch */
    uint32_t sequence;
    uint32_t security_counter;
    uint32_t hardware_class;
    uint32_t min_runtime_version;
    uint8_t payload_encoding;
    uint8_t flags;                  /* TFA_MANIFEST_FLAG_* */
    uint32_t payload_size;
    uint8_t payload_sha256[32];
    uint32_t model_size;
    uint8_t model_sha256[32];
    uint8_t delta_base_sha256[32];
    uint32_t arena_bytes;
    uint32_t selftest_seed;
    uint8_t selftest_output_sha256[32];
    uint64_t created_at;
    uint8_t key_id[8];
    uint8_t signature[64];
} tfa_manifest_t;

struct tfa_trusted_key;

/* Parse and authenticate: length, magic, format, key lookup, signature, field ranges, in that order.
 * Returns 0 and fills out, or -TFA_ERR_x. Policy checks (hardware class...) are the runtime's. */
int tfa_manifest_parse(const uint8_t *buf, uint32_t len, const struct tfa_trusted_key *keys,
                       uint32_t key_count, tfa_manifest_t *out);

#endif
