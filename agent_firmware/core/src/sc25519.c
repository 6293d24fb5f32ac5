/* Scalar arithmetic mod L. Verification needs only a range check and one 512-bit reduction per
 * signature, so the reduction is plain binary long division (shift in one bit, subtract L when the
 * remainder reaches it): about 512 eight-word steps, negligible next to the point multiplication,
 * and simple enough to check by eye. */
#include "sc25519.h"

/* L as eight little-endian 32-bit words. */
static const uint32_t prv_l[8] = {0x5CF5D3EDu, 0x5812631Au, 0xA2F79CD6u, 0x14DEF9DEu,
                                  0x00000000u, 0x00000000u, 0x00000000u, 0x10000000u};

/* 1 if a >= L. */
static int prv_geq_l(const uint32_t a[8])
{
    for (unsigned i = 8; i-- > 0;) {
        if (a[i] != prv_l[i]) {
            return a[i] > prv_l[i];
        }
    }
    return 1;
}

static void prv_sub_l(uint32_t a[8])
{
    uint32_t borrow = 0;
    for (unsigned i = 0; i < 8u; i++) {
        uint64_t diff = (uint64_t)a[i] - prv_l[i] - borrow;
        a[i] = (uint32_t)diff;
        borrow = (uint32_t)(diff >> 63); /* 1 when the subtraction wrapped */
    }
}

int tfa_sc_is_canonical(const uint8_t s[32])
{
    uint32_t a[8] = {0};
    for (unsigned i = 0; i < 32u; i++) {
        a[i / 4u] |= (uint32_t)s[i] << (8u * (i % 4u));
    }
    return !prv_geq_l(a);
}

void tfa_sc_reduce64(uint8_t out[32], const uint8_t x[64])
{
    /* Invariant: r < L < 2^253 before each step, so 2r + 1 < 2^254 fits in eight words and one
     * conditional subtraction restores r < L. */
    uint32_t r[8] = {0};
    for (unsigned bit = 512; bit-- > 0;) {
        uint32_t in = (uint32_t)(x[bit / 8u] >> (bit % 8u)) & 1u;
        for (unsigned i = 7; i > 0; i--) {
            r[i] = (r[i] << 1) | (r[i - 1] >> 31);
        }
        r[0] = (r[0] << 1) | in;
        if (prv_geq_l(r)) {
            prv_sub_l(r);
        }
    }
    for (unsigned i = 0; i < 32u; i++) {
        out[i] = (uint8_t)(r[i / 4u] >> (8u * (i % 4u)));
    }
}
