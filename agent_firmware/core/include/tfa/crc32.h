/* CRC-32 (IEEE 802.3, reflected, poly 0xEDB88320), the same as Python's zlib.crc32. */
#ifndef TFA_CRC32_H
#define TFA_CRC32_H

#include <stddef.h>
#include <stdint.h>

/* Continue a CRC: start with crc = 0. tfa_crc32(tfa_crc32(0, a), b) == crc of a||b. */
uint32_t tfa_crc32(uint32_t crc, const uint8_t *data, size_t len);

#endif
