/* The provisioning record: the device's trusted keys and config, written once at the factory (here: by
 * the QEMU harness into a read-only page) so that one firmware binary serves every device and test.
 *
 * Layout (little-endian), PROVISION_HEADER_SIZE + 40 * key_count (+ 32) + 4 bytes:
 *   0  magic "TFPV"        4  u16 format = 1 or 2  6  u16 key_count (1..PROVISION_MAX_KEYS)
 *   8  u32 hardware_class  12 u32 ram_budget      16 u32 slot_size
 *   20 u8 max_trial_boots  21 u8 flags (format 2; 0 in format 1)  22 u8[2] zero
 *   24 key_count x { key_id[8], public_key[32] }
 *   .. format 2 with flags bit 0: the device's X25519 private key (32 bytes; docs/PROTOCOL.md 6.4)
 *   .. u32 CRC-32 of every byte before it
 * flags: bit 0 an encryption key follows the trusted keys, bit 1 require_encryption; other bits zero.
 * A key whose id is not SHA-256(public_key)[0:8] makes the whole record invalid. A firmware built
 * without decryption (TFA_NO_ENCRYPTION) reads the record the same way and ignores the key. */
#ifndef PROVISION_H
#define PROVISION_H

#include <stdint.h>

#include "tfa/runtime.h"

#define PROVISION_MAGIC "TFPV"
#define PROVISION_FORMAT 1u
#define PROVISION_FORMAT_KEYED 2u
#define PROVISION_FLAG_ENCRYPTION_KEY 1u
#define PROVISION_FLAG_REQUIRE_ENCRYPTION 2u
#define PROVISION_HEADER_SIZE 24u
#define PROVISION_KEY_SIZE 40u
#define PROVISION_MAX_KEYS 8u

typedef struct provision {
    uint32_t hardware_class;
    uint32_t ram_budget;
    uint32_t slot_size;
    uint8_t max_trial_boots;
    uint32_t key_count;
    tfa_trusted_key_t keys[PROVISION_MAX_KEYS];
    uint8_t flags;                 /* PROVISION_FLAG_x */
    uint8_t encryption_key[32];    /* valid with PROVISION_FLAG_ENCRYPTION_KEY */
} provision_t;

/* Parse and check rec[0, len). Returns 0, or -TFA_ERR_FIELD_RANGE / -TFA_ERR_TRUNCATED /
 * -TFA_ERR_BAD_MAGIC / -TFA_ERR_DIGEST_MISMATCH (CRC or key id). On error out is zeroed:
 * no trusted key, so every install is refused. */
int provision_parse(const uint8_t *rec, uint32_t len, provision_t *out);

#endif
