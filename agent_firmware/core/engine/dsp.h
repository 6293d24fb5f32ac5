/* Packed 16-bit SIMD of the Armv7E-M DSP extension, for the optimized kernels (kernels_*_dsp.c).
 *
 * With __ARM_FEATURE_DSP (Cortex-M4/M7/M33 with DSP) each helper is the arm_acle.h intrinsic, one
 * instruction. Elsewhere (the host) the same helpers are portable C with the instructions' exact
 * semantics (Arm ARM: SXTB16, SMLAD, SADD16, ROR), so the optimized kernels run unchanged on the host
 * under ASan/UBSan and are compared there with the reference kernels.
 *
 * Packed values are uint32_t: bits 15:0 the low halfword, 31:16 the high one, each a signed int16.
 *
 * TFA_ENG_OPTIMIZED is 1 when the optimized kernels are compiled: on a DSP target, and on a hosted
 * build (for the tests); 0 on an Arm target without DSP (Cortex-M0/M3), where the table rows fall
 * back to the reference kernels. TFA_ENG_OPTIMIZED_DEFAULT: what tfa_engine_init uses (the host keeps
 * the reference kernels as its default and the oracle). */
#ifndef TFA_ENGINE_DSP_H
#define TFA_ENGINE_DSP_H

#include <stdint.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
/* the kernels read four int8 (two int16) as one word, byte 0 in bits 7:0 */
#define TFA_ENG_OPTIMIZED 0
#define TFA_ENG_OPTIMIZED_DEFAULT 0
#elif defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#include <arm_acle.h>
#define TFA_ENG_OPTIMIZED 1
#define TFA_ENG_OPTIMIZED_DEFAULT 1
#elif defined(__arm__) || defined(__thumb__)
#define TFA_ENG_OPTIMIZED 0
#define TFA_ENG_OPTIMIZED_DEFAULT 0
#else
#define TFA_ENG_OPTIMIZED 1
#define TFA_ENG_OPTIMIZED_DEFAULT 0
#endif

/* Inner loops keep their own registers (inlined into a kernel's outer loops they would spill). */
#if defined(__GNUC__)
#define TFA_DSP_NOINLINE __attribute__((noinline))
#else
#define TFA_DSP_NOINLINE
#endif

/* Four bytes from any address (the M4 loads unaligned words in one LDR, which the builtin memcpy
 * compiles to; a -ffreestanding build would otherwise call the library's memcpy). */
#if defined(__GNUC__)
#define TFA_DSP_MEMCPY __builtin_memcpy
#else
#define TFA_DSP_MEMCPY memcpy
#endif

static inline uint32_t tfa_dsp_load4(const void *p)
{
    uint32_t v;
    TFA_DSP_MEMCPY(&v, p, 4);
    return v;
}

static inline uint32_t tfa_dsp_load_pair(const int16_t *p)
{
    uint32_t v;
    TFA_DSP_MEMCPY(&v, p, 4);
    return v;
}

static inline void tfa_dsp_store_pair(int16_t *p, uint32_t v)
{
    TFA_DSP_MEMCPY(p, &v, 4);
}

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP

/* bytes 0 and 2, sign-extended to halfwords */
static inline uint32_t tfa_dsp_sxtb16(uint32_t x)
{
    return (uint32_t)__sxtb16((int8x4_t)x);
}

/* bytes 1 and 3 (SXTB16 with its ROR #8 operand: the compiler folds the rotate) */
static inline uint32_t tfa_dsp_sxtb16_ror8(uint32_t x)
{
    uint32_t r;
    /* arm_acle.h has no rotated form and GCC 12 does not fold a C rotate into the operand */
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}

/* acc + lo(a)*lo(b) + hi(a)*hi(b), wrapping */
static inline int32_t tfa_dsp_smlad(uint32_t a, uint32_t b, int32_t acc)
{
    return __smlad((int16x2_t)a, (int16x2_t)b, acc);
}

/* halfword-wise a + b, wrapping */
static inline uint32_t tfa_dsp_sadd16(uint32_t a, uint32_t b)
{
    return (uint32_t)__sadd16((int16x2_t)a, (int16x2_t)b);
}

/* a + bytes 0 and 2 of x sign-extended, halfword-wise (SXTAB16) */
static inline uint32_t tfa_dsp_sxtab16(uint32_t a, uint32_t x)
{
    return (uint32_t)__sxtab16((int16x2_t)a, (int8x4_t)x);
}

/* a + bytes 1 and 3 of x (SXTAB16 with its ROR #8 operand; no ACLE form, as for SXTB16) */
static inline uint32_t tfa_dsp_sxtab16_ror8(uint32_t a, uint32_t x)
{
    uint32_t r;
    __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(a), "r"(x));
    return r;
}

/* acc + lo(a)*lo(b), and acc + hi(a)*hi(b) */
static inline int32_t tfa_dsp_smlabb(uint32_t a, uint32_t b, int32_t acc)
{
    return __smlabb((int32_t)a, (int32_t)b, acc);
}

static inline int32_t tfa_dsp_smlatt(uint32_t a, uint32_t b, int32_t acc)
{
    return __smlatt((int32_t)a, (int32_t)b, acc);
}

#else

static inline uint32_t tfa_dsp_pack(int32_t lo, int32_t hi)
{
    return ((uint32_t)lo & 0xFFFFu) | ((uint32_t)hi << 16);
}

static inline int32_t tfa_dsp_lo(uint32_t x)
{
    return (int32_t)(int16_t)(uint16_t)(x & 0xFFFFu);
}

static inline int32_t tfa_dsp_hi(uint32_t x)
{
    return (int32_t)(int16_t)(uint16_t)(x >> 16);
}

static inline uint32_t tfa_dsp_sxtb16(uint32_t x)
{
    return tfa_dsp_pack((int8_t)(uint8_t)(x & 0xFFu), (int8_t)(uint8_t)((x >> 16) & 0xFFu));
}

static inline uint32_t tfa_dsp_sxtb16_ror8(uint32_t x)
{
    return tfa_dsp_sxtb16((x >> 8) | (x << 24));
}

static inline int32_t tfa_dsp_smlad(uint32_t a, uint32_t b, int32_t acc)
{
    /* each product fits int32; the sums wrap like the instruction's (which only sets the Q flag) */
    uint32_t p0 = (uint32_t)(tfa_dsp_lo(a) * tfa_dsp_lo(b));
    uint32_t p1 = (uint32_t)(tfa_dsp_hi(a) * tfa_dsp_hi(b));
    return (int32_t)((uint32_t)acc + p0 + p1);
}

static inline uint32_t tfa_dsp_sadd16(uint32_t a, uint32_t b)
{
    return tfa_dsp_pack(tfa_dsp_lo(a) + tfa_dsp_lo(b), tfa_dsp_hi(a) + tfa_dsp_hi(b));
}

static inline uint32_t tfa_dsp_sxtab16(uint32_t a, uint32_t x)
{
    return tfa_dsp_sadd16(a, tfa_dsp_sxtb16(x));
}

static inline uint32_t tfa_dsp_sxtab16_ror8(uint32_t a, uint32_t x)
{
    return tfa_dsp_sadd16(a, tfa_dsp_sxtb16_ror8(x));
}

static inline int32_t tfa_dsp_smlabb(uint32_t a, uint32_t b, int32_t acc)
{
    return (int32_t)((uint32_t)acc + (uint32_t)(tfa_dsp_lo(a) * tfa_dsp_lo(b)));
}

static inline int32_t tfa_dsp_smlatt(uint32_t a, uint32_t b, int32_t acc)
{
    return (int32_t)((uint32_t)acc + (uint32_t)(tfa_dsp_hi(a) * tfa_dsp_hi(b)));
}

#endif

/* (lo half of a, lo half of b) and (hi half of a, hi half of b): PKHBT / PKHTB (GCC 12 spells these
 * patterns with two or three instructions, hence the asm). */
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
static inline uint32_t tfa_dsp_pkhbt(uint32_t a, uint32_t b)
{
    uint32_t r;
    __asm__("pkhbt %0, %1, %2, lsl #16" : "=r"(r) : "r"(a), "r"(b));
    return r;
}

static inline uint32_t tfa_dsp_pkhtb(uint32_t b, uint32_t a)
{
    uint32_t r;
    __asm__("pkhtb %0, %1, %2, asr #16" : "=r"(r) : "r"(b), "r"(a));
    return r;
}
#else
static inline uint32_t tfa_dsp_pkhbt(uint32_t a, uint32_t b)
{
    return (a & 0xFFFFu) | (b << 16);
}

static inline uint32_t tfa_dsp_pkhtb(uint32_t b, uint32_t a)
{
    return (b & 0xFFFF0000u) | (a >> 16);
}
#endif

/* The two words at byte offset off (a constant, a multiple of 4 up to 1020) of a word-aligned p: one
 * LDRD (GCC 12 loads two adjacent words, or a uint64_t, with two LDRs). */
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#define TFA_DSP_LOAD2W(p, off, a, b)                                                   \
    __asm__("ldrd %0, %1, [%2, %3]"                                                   \
            : "=r"(a), "=r"(b)                                                        \
            : "r"(p), "n"(off), "m"(*(const uint8_t(*)[(off) + 8])(const void *)(p)))
#else
#define TFA_DSP_LOAD2W(p, off, a, b)                                \
    do {                                                            \
        (a) = tfa_dsp_load4((const uint8_t *)(const void *)(p) + (off));     \
        (b) = tfa_dsp_load4((const uint8_t *)(const void *)(p) + (off) + 4); \
    } while (0)
#endif

/* (a * b + 2^31) >> 32, the high word rounded: SMMULR (no ACLE intrinsic). */
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
static inline int32_t tfa_dsp_smmulr(int32_t a, int32_t b)
{
    int32_t r;
    __asm__("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
#else
static inline int32_t tfa_dsp_smmulr(int32_t a, int32_t b)
{
    return (int32_t)(((int64_t)a * b + ((int64_t)1 << 31)) >> 32);
}
#endif

/* tfa_q_mul_by_quantized (quant.c: TFLite's MultiplyByQuantizedMultiplier) inlined, same result for
 * every input. The rounding doubling high multiply (ab + nudge) / 2^31, truncating, equals
 * (ab + 2^30) >> 31 with an arithmetic (flooring) shift for either sign of ab: for ab < 0 the nudge
 * is 1 - 2^30 and truncation is ceiling, ceil((ab + 1 - 2^30) / 2^31) = floor((ab + 2^30) / 2^31).
 *
 * Fast path (the kernels' usual case: a right shift r of 1..30 and |x| < 2^30): 2x fits, so that
 * high word is SMMULR(2x, m) = floor((2xm + 2^31) / 2^32), one instruction; |high| <= |x| < 2^30 so
 * INT32_MIN * INT32_MIN cannot occur; and TFLM's rounding right shift (half away from zero) is
 * (high + 2^(r-1) - (high < 0)) >> r, flooring, which stays below 2^31. Elsewhere: SMULL, a 64-bit
 * add and a shift, then the rounding shift as TFLM writes it. */
static inline int32_t tfa_dsp_requantize(int32_t x, int32_t multiplier, int shift)
{
    /* ~shift = r - 1 for shift = -r */
    if ((uint32_t)~shift < 30u && (uint32_t)x + 0x40000000u < 0x80000000u) {
        const int32_t high = tfa_dsp_smmulr(x + x, multiplier);
        return (high + (int32_t)(1u << (uint32_t)~shift) + (high >> 31)) >> -shift;
    }
    const int left = shift > 0 ? shift : 0;
    const int right = shift > 0 ? 0 : -shift;
    const int32_t a = (int32_t)((uint32_t)x << left);
    int32_t high;
    if (a == INT32_MIN && multiplier == INT32_MIN) {
        high = INT32_MAX;
    } else {
        high = (int32_t)(((int64_t)a * multiplier + ((int64_t)1 << 30)) >> 31);
    }
    const int32_t mask = (int32_t)(((uint32_t)1 << right) - 1u);
    const int32_t threshold = (mask >> 1) + (high < 0 ? 1 : 0);
    return (high >> right) + ((high & mask) > threshold ? 1 : 0);
}

/* Two halfwords into one packed value: lo in bits 15:0 (PKHBT pattern). */
static inline uint32_t tfa_dsp_pack2(int32_t lo, int32_t hi)
{
    return ((uint32_t)lo & 0xFFFFu) | ((uint32_t)hi << 16);
}

#endif
