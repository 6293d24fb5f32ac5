/* Private: little-endian u16/u32 fields of the wire and flash formats (frames, manifests, state records).
 * On a little-endian GCC or Clang target a fixed-size __builtin_memcpy is one load or store, unaligned where
 * the core allows it (ARMv7-M LDR/STR/LDRH/STRH) and bytes where it does not; the byte-by-byte form
 * elsewhere. Why not the shift form everywhere: GCC merges its loads but not its stores, and on the
 * Cortex-M4 each of the ~40 field stores then cost 8 instructions where one STR does. The files build with
 * -ffreestanding, so a plain memcpy would be a call. */
#ifndef TFA_LE_BYTES_H
#define TFA_LE_BYTES_H

#include <stdint.h>

/* tests/test_le_bytes.c builds the byte form on the host by defining TFA_LE_NATIVE 0 first. */
#ifndef TFA_LE_NATIVE
#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define TFA_LE_NATIVE 1
#else
#define TFA_LE_NATIVE 0
#endif
#endif

static inline uint16_t tfa_get_le16(const uint8_t *p)
{
#if TFA_LE_NATIVE
    uint16_t v;
    __builtin_memcpy(&v, p, 2);
    return v;
#else
    return (uint16_t)(p[0] | (p[1] << 8));
#endif
}

static inline uint32_t tfa_get_le32(const uint8_t *p)
{
#if TFA_LE_NATIVE
    uint32_t v;
    __builtin_memcpy(&v, p, 4);
    return v;
#else
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
#endif
}

static inline void tfa_put_le16(uint8_t *p, uint32_t v)
{
#if TFA_LE_NATIVE
    uint16_t w = (uint16_t)v;
    __builtin_memcpy(p, &w, 2);
#else
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
#endif
}

static inline void tfa_put_le32(uint8_t *p, uint32_t v)
{
#if TFA_LE_NATIVE
    __builtin_memcpy(p, &v, 4);
#else
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
#endif
}

#endif
