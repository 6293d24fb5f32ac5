/* Size-optimized mem* replacing newlib-nano's speed-optimized ones (824 B -> about 150 B of flash): the
 * agent copies at most a frame or a record at a time, so a word loop when aligned is fast enough.
 * Built with -fno-builtin -fno-tree-loop-distribute-patterns (Makefile), or GCC would turn these very
 * loops back into calls to themselves. */
#include <stddef.h>
#include <stdint.h>

static int prv_aligned(const void *a, const void *b, size_t n)
{
    return (((uintptr_t)a | (uintptr_t)b | n) & 3u) == 0u;
}

/* ARMv7-M's LDR and STR take any alignment (CCR.UNALIGN_TRP is clear out of reset; LDM, STM and LDRD would
 * fault), so words are copied whatever the pointers' alignment: the delta decoder's reads of the base and
 * programming of the output start anywhere (issue 17: a byte loop then, 4 instructions per byte). */
typedef uint32_t __attribute__((aligned(1), may_alias)) prv_any_word_t;

void *memcpy(void *restrict dst, const void *restrict src, size_t n)
{
    uint8_t *d = dst;
    const uint8_t *s = src;
    for (const uint8_t *words_end = s + (n & ~(size_t)3u); s != words_end; d += 4, s += 4) {
        *(prv_any_word_t *)(void *)d = *(const prv_any_word_t *)(const void *)s;
    }
    n &= 3u;
    while (n-- != 0u) {
        *d++ = *s++;
    }
    return dst;
}

void *memmove(void *dst, const void *src, size_t n)
{
    uint8_t *d = dst;
    const uint8_t *s = src;
    if (d <= s) {
        while (n-- != 0u) {
            *d++ = *s++;
        }
    } else {
        while (n-- != 0u) { /* overlapping with dst after src: copy from the end */
            d[n] = s[n];
        }
    }
    return dst;
}

void *memset(void *dst, int c, size_t n)
{
    uint8_t *d = dst;
    if (prv_aligned(dst, dst, n)) {
        uint32_t *w = dst;
        const uint32_t v = 0x01010101u * (uint8_t)c;
        for (n /= 4u; n != 0u; n--) {
            *w++ = v;
        }
        return dst;
    }
    while (n-- != 0u) {
        *d++ = (uint8_t)c;
    }
    return dst;
}

int memcmp(const void *a, const void *b, size_t n)
{
    const uint8_t *x = a;
    const uint8_t *y = b;
    for (; n != 0u; n--, x++, y++) {
        if (*x != *y) {
            return (int)*x - (int)*y;
        }
    }
    return 0;
}
