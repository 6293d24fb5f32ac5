/* Shared set-up of the libFuzzer harnesses (agent_firmware/fuzz/fuzz_*.c): a RAM NOR flash on static
 * storage (ports/host/flash_host.c given its buffer: no allocation anywhere, as on a device), the
 * device of tests/vectors/device.txt and its trusted key (tests/vectors/key_trusted.pub). */
#ifndef TFA_FUZZ_COMMON_H
#define TFA_FUZZ_COMMON_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "flash_host.h"
#include "tfa/runtime.h"
#include "tfa/sha256.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_HW_CLASS 7u
#define FZ_SECTOR 4096u
#define FZ_SLOT 16384u
#define FZ_FLASH_SIZE TFA_FLASH_SIZE_FOR(FZ_SECTOR, FZ_SLOT)

/* tests/vectors/key_trusted.pub; key_id = the first 8 bytes of its SHA-256. */
static inline void fz_trusted_key(tfa_trusted_key_t *key)
{
    static const uint8_t pub[32] = {0x24, 0xd3, 0xc6, 0x1b, 0xbe, 0x81, 0xd2, 0xe5, 0xe8, 0xc7, 0x25,
                                    0xfa, 0x02, 0x18, 0xac, 0xfc, 0x19, 0xdd, 0xa6, 0xbb, 0x16, 0x8a,
                                    0x6d, 0xc9, 0xf1, 0xa0, 0x4b, 0xd9, 0x2f, 0x5f, 0xe0, 0x80};
    uint8_t digest[32];
    memcpy(key->public_key, pub, 32);
    tfa_sha256(pub, 32, digest);
    memcpy(key->key_id, digest, 8);
}

/* An erased flash of size bytes on the caller's storage. */
static inline void fz_flash(tfa_flash_host_t *fh, uint8_t *storage, uint32_t size, uint32_t sector)
{
    memset(storage, 0xFF, size);
    if (tfa_flash_host_init(fh, storage, size, sector) != 0) {
        abort();
    }
}

/* Little-endian reads from the fuzz input. */
static inline uint32_t fz_u16(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8);
}

static inline uint32_t fz_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

#endif
