/* Board-independent parts of the mps2-an386 port, run on the host under ASan/UBSan: the RAM flash's
 * NOR rules and the provisioning record parser. The port's sources are compiled in directly (they are
 * not part of the host library); the QEMU tests (tests/test_qemu_port.py) cover them on the M4. */
#include <stdio.h>
#include <string.h>

#include "../ports/mps2-an386/provision.c"
#include "../ports/mps2-an386/ram_flash.c"
#include "tfa/crc32.h"
#include "tfa/errors.h"
#include "tfa/sha256.h"

static int g_failures;

#define CHECK(cond)                                                                                   \
    do {                                                                                              \
        if (!(cond)) {                                                                                \
            fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);                  \
            g_failures++;                                                                             \
        }                                                                                             \
    } while (0)

#define SECTOR 64u
#define SECTORS 4u

static void prv_test_ram_flash(void)
{
    uint8_t mem[SECTOR * SECTORS];
    ram_flash_t state;
    tfa_flash_t f;
    memset(mem, 0xFF, sizeof(mem));
    ram_flash_init(&state, &f, mem, sizeof(mem), SECTOR);
    CHECK(f.size == sizeof(mem) && f.sector_size == SECTOR && f.mapped == mem);

    const uint8_t a[4] = {0xF0, 0x0F, 0xAA, 0x55};
    CHECK(f.program(f.ctx, 10, a, 4) == 0);
    CHECK(memcmp(mem + 10, a, 4) == 0);
    const uint8_t b[4] = {0xF0, 0x0F, 0x00, 0x55}; /* clearing more bits is allowed */
    CHECK(f.program(f.ctx, 10, b, 4) == 0);
    /* mem[10..13] = F0 0F 00 55. Setting a cleared bit back is refused, and a refused program
     * writes nothing, not even its valid first byte. */
    const uint8_t set_back[2] = {0x00, 0xFF}; /* 0x0F -> 0x00 fine, then 0x00 -> 0xFF refused */
    uint8_t before[sizeof(mem)];
    memcpy(before, mem, sizeof(mem));
    CHECK(f.program(f.ctx, 11, set_back, 2) == -TFA_ERR_FLASH_NOT_ERASED);
    CHECK(memcmp(before, mem, sizeof(mem)) == 0);
    const uint8_t zeros[4] = {0, 0, 0, 0};
    CHECK(f.program(f.ctx, 10, zeros, 4) == 0);

    uint8_t out[4];
    CHECK(f.read(f.ctx, 10, out, 4) == 0);
    CHECK(memcmp(out, zeros, 4) == 0);
    /* Bounds: reads and programs past the end fail, whole or not at all. */
    CHECK(f.read(f.ctx, sizeof(mem) - 2u, out, 4) == -TFA_ERR_FLASH_IO);
    CHECK(f.program(f.ctx, sizeof(mem) - 2u, a, 4) == -TFA_ERR_FLASH_IO);
    CHECK(f.read(f.ctx, 0xFFFFFFF0u, out, 0x20) == -TFA_ERR_FLASH_IO);
    CHECK(f.read(f.ctx, sizeof(mem), out, 0) == 0);

    /* Erase: aligned sectors only, sets exactly that sector to 0xFF. */
    CHECK(f.erase(f.ctx, 1) == -TFA_ERR_FLASH_IO);
    CHECK(f.erase(f.ctx, SECTOR * SECTORS) == -TFA_ERR_FLASH_IO);
    memset(mem + SECTOR, 0x00, SECTOR + 1u);
    CHECK(f.erase(f.ctx, SECTOR) == 0);
    for (uint32_t i = SECTOR; i < 2u * SECTOR; i++) {
        CHECK(mem[i] == 0xFF);
    }
    CHECK(mem[2u * SECTOR] == 0x00);
    CHECK(f.program(f.ctx, SECTOR, a, 4) == 0);
}

/* A record with n keys derived from seed bytes; returns its length. */
static uint32_t prv_record(uint8_t *rec, uint32_t n, uint32_t slot_size)
{
    memset(rec, 0xFF, 4096);
    memcpy(rec, "TFPV", 4);
    rec[4] = 1;
    rec[5] = 0;
    rec[6] = (uint8_t)n;
    rec[7] = 0;
    const uint32_t fields[3] = {7u, 16384u, slot_size};
    for (uint32_t i = 0; i < 3u; i++) {
        for (uint32_t b = 0; b < 4u; b++) {
            rec[8u + 4u * i + b] = (uint8_t)(fields[i] >> (8u * b));
        }
    }
    rec[20] = 2;
    rec[21] = rec[22] = rec[23] = 0;
    for (uint32_t k = 0; k < n; k++) {
        uint8_t *key = rec + 24u + 40u * k;
        for (uint32_t i = 0; i < 32u; i++) {
            key[8u + i] = (uint8_t)(k * 31u + i);
        }
        uint8_t digest[32];
        tfa_sha256(key + 8, 32, digest);
        memcpy(key, digest, 8);
    }
    uint32_t body = 24u + 40u * n;
    uint32_t crc = tfa_crc32(0, rec, body);
    for (uint32_t b = 0; b < 4u; b++) {
        rec[body + b] = (uint8_t)(crc >> (8u * b));
    }
    return body + 4u;
}

static void prv_fix_crc(uint8_t *rec, uint32_t n)
{
    uint32_t body = 24u + 40u * n;
    uint32_t crc = tfa_crc32(0, rec, body);
    for (uint32_t b = 0; b < 4u; b++) {
        rec[body + b] = (uint8_t)(crc >> (8u * b));
    }
}

/* Format 2 (PROVISION_FORMAT_KEYED): flags in byte 21, the device's X25519 key after the trusted keys,
 * under the CRC. rec holds 4096 bytes. */
static void prv_test_provision_keyed(uint8_t *rec)
{
    provision_t p;
    uint32_t body = prv_record(rec, 1, 65536) - 4u;
    rec[4] = PROVISION_FORMAT_KEYED;
    rec[21] = PROVISION_FLAG_ENCRYPTION_KEY | PROVISION_FLAG_REQUIRE_ENCRYPTION;
    for (uint32_t i = 0; i < 32u; i++) {
        rec[body + i] = (uint8_t)(0xA0u + i);
    }
    uint32_t crc = tfa_crc32(0, rec, body + 32u);
    for (uint32_t b = 0; b < 4u; b++) {
        rec[body + 32u + b] = (uint8_t)(crc >> (8u * b));
    }
    CHECK(provision_parse(rec, body + 36u, &p) == 0 && p.key_count == 1u);
    CHECK(p.flags == 3u && p.encryption_key[0] == 0xA0u && p.encryption_key[31] == 0xBFu);
    CHECK(provision_parse(rec, body + 35u, &p) == -TFA_ERR_TRUNCATED && p.flags == 0u);
    rec[body + 5u] ^= 1u; /* inside the key: the CRC covers it */
    CHECK(provision_parse(rec, body + 36u, &p) == -TFA_ERR_DIGEST_MISMATCH);
    rec[body + 5u] ^= 1u;
    rec[21] = 4u; /* unknown flag */
    CHECK(provision_parse(rec, body + 36u, &p) == -TFA_ERR_FIELD_RANGE);
    /* Format 2 without a key: no key bytes, only require_encryption. */
    body = prv_record(rec, 1, 65536) - 4u;
    rec[4] = PROVISION_FORMAT_KEYED;
    rec[21] = PROVISION_FLAG_REQUIRE_ENCRYPTION;
    prv_fix_crc(rec, 1);
    CHECK(provision_parse(rec, body + 4u, &p) == 0 && p.flags == PROVISION_FLAG_REQUIRE_ENCRYPTION);
}

static void prv_test_provision(void)
{
    static uint8_t rec[4096];
    provision_t p;
    uint32_t len = prv_record(rec, 2, 65536);
    CHECK(provision_parse(rec, sizeof(rec), &p) == 0);
    CHECK(p.hardware_class == 7u && p.ram_budget == 16384u && p.slot_size == 65536u);
    CHECK(p.max_trial_boots == 2u && p.key_count == 2u);
    CHECK(p.keys[1].public_key[0] == 31u && p.keys[1].public_key[31] == 62u);
    CHECK(provision_parse(rec, len, &p) == 0);

    /* Every damage leaves a zeroed config: no trusted key. */
    CHECK(provision_parse(rec, len - 1u, &p) == -TFA_ERR_TRUNCATED && p.key_count == 0u);
    CHECK(provision_parse(rec, 10, &p) == -TFA_ERR_TRUNCATED);
    rec[50] ^= 1u; /* inside the first public key: CRC */
    CHECK(provision_parse(rec, len, &p) == -TFA_ERR_DIGEST_MISMATCH && p.key_count == 0u);
    prv_fix_crc(rec, 2);
    CHECK(provision_parse(rec, len, &p) == -TFA_ERR_DIGEST_MISMATCH); /* key id no longer matches */
    rec[50] ^= 1u;
    prv_fix_crc(rec, 2);
    CHECK(provision_parse(rec, len, &p) == 0);

    rec[0] = 'X';
    CHECK(provision_parse(rec, len, &p) == -TFA_ERR_BAD_MAGIC);
    rec[0] = 'T';
    rec[4] = 3; /* format */
    CHECK(provision_parse(rec, len, &p) == -TFA_ERR_FIELD_RANGE);
    rec[4] = 1;
    rec[21] = 1; /* flags need format 2 */
    CHECK(provision_parse(rec, len, &p) == -TFA_ERR_FIELD_RANGE);
    rec[21] = 0;
    rec[22] = 1; /* reserved */
    CHECK(provision_parse(rec, len, &p) == -TFA_ERR_FIELD_RANGE);
    rec[22] = 0;
    rec[6] = 0; /* no key */
    CHECK(provision_parse(rec, len, &p) == -TFA_ERR_FIELD_RANGE);
    rec[6] = PROVISION_MAX_KEYS + 1u;
    CHECK(provision_parse(rec, sizeof(rec), &p) == -TFA_ERR_FIELD_RANGE);
    len = prv_record(rec, PROVISION_MAX_KEYS, 4096);
    CHECK(provision_parse(rec, len, &p) == 0 && p.key_count == PROVISION_MAX_KEYS);
    prv_test_provision_keyed(rec);
    memset(rec, 0, sizeof(rec)); /* an erased/blank page */
    CHECK(provision_parse(rec, sizeof(rec), &p) == -TFA_ERR_BAD_MAGIC && p.key_count == 0u);
}

int main(void)
{
    prv_test_ram_flash();
    prv_test_provision();
    if (g_failures != 0) {
        fprintf(stderr, "test_mps2_port: %d failure(s)\n", g_failures);
        return 1;
    }
    printf("test_mps2_port: ok\n");
    return 0;
}
