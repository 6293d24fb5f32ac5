/* GF(2^255 - 19) arithmetic, radix 2^25.5 with unsigned limbs; see fe25519.h for the representation
 * and the bounds every function keeps. Variable time: only public data goes through verification. */
#include "fe25519.h"

#include <string.h>

#define MASK26 0x3FFFFFFu
#define MASK25 0x1FFFFFFu

const tfa_fe tfa_fe_d = {{0x35978A3u, 0x0D37284u, 0x3156EBDu, 0x06A0A0Eu, 0x001C029u, 0x179E898u, 0x3A03CBBu,
                          0x1CE7198u, 0x2E2B6FFu, 0x1480DB3u}};
const tfa_fe tfa_fe_d2 = {{0x2B2F159u, 0x1A6E509u, 0x22ADD7Au, 0x0D4141Du, 0x0038052u, 0x0F3D130u, 0x3407977u,
                           0x19CE331u, 0x1C56DFFu, 0x0901B67u}};
const tfa_fe tfa_fe_sqrtm1 = {{0x20EA0B0u, 0x186C9D2u, 0x08F189Du, 0x035697Fu, 0x0BD0C60u, 0x1FBD7A7u,
                               0x2804C9Eu, 0x1E16569u, 0x004FC1Du, 0x0AE0C92u}};

/* 2p in this radix, limb by limb: added before subtracting so limbs never go negative. */
static const uint32_t prv_two_p[10] = {0x7FFFFDAu, 0x3FFFFFEu, 0x7FFFFFEu, 0x3FFFFFEu, 0x7FFFFFEu,
                                       0x3FFFFFEu, 0x7FFFFFEu, 0x3FFFFFEu, 0x7FFFFFEu, 0x3FFFFFEu};

static unsigned prv_width(unsigned i)
{
    return (i & 1u) ? 25u : 26u;
}

/* Carries limbs below 2^28 back into the carried form (2^255 = 19 mod p for the top carry).
 * Unrolled with constant shifts: with loops over alternating widths here and in prv_carry64, a whole
 * verify took 1.7x the instructions on the M4. */
static void prv_carry32(uint32_t h[10])
{
    h[1] += h[0] >> 26;
    h[0] &= MASK26;
    h[2] += h[1] >> 25;
    h[1] &= MASK25;
    h[3] += h[2] >> 26;
    h[2] &= MASK26;
    h[4] += h[3] >> 25;
    h[3] &= MASK25;
    h[5] += h[4] >> 26;
    h[4] &= MASK26;
    h[6] += h[5] >> 25;
    h[5] &= MASK25;
    h[7] += h[6] >> 26;
    h[6] &= MASK26;
    h[8] += h[7] >> 25;
    h[7] &= MASK25;
    h[9] += h[8] >> 26;
    h[8] &= MASK26;
    h[0] += 19u * (h[9] >> 25);
    h[9] &= MASK25;
    h[1] += h[0] >> 26;
    h[0] &= MASK26;
}

/* Same for 64-bit column sums (each < 2^61) coming out of a multiplication. After a limb's carry
 * has moved up, the limb fits in 26 bits, so only the low word is kept. */
static void prv_carry64(tfa_fe *out, uint64_t h[10])
{
    h[1] += h[0] >> 26;
    h[2] += h[1] >> 25;
    h[3] += h[2] >> 26;
    h[4] += h[3] >> 25;
    h[5] += h[4] >> 26;
    h[6] += h[5] >> 25;
    h[7] += h[6] >> 26;
    h[8] += h[7] >> 25;
    h[9] += h[8] >> 26;
    h[0] = (h[0] & MASK26) + 19u * (h[9] >> 25); /* 19 * 2^36 < 2^41: no overflow */
    out->v[1] = (uint32_t)(h[1] & MASK25) + (uint32_t)(h[0] >> 26);
    out->v[0] = (uint32_t)h[0] & MASK26;
    out->v[2] = (uint32_t)h[2] & MASK26;
    out->v[3] = (uint32_t)h[3] & MASK25;
    out->v[4] = (uint32_t)h[4] & MASK26;
    out->v[5] = (uint32_t)h[5] & MASK25;
    out->v[6] = (uint32_t)h[6] & MASK26;
    out->v[7] = (uint32_t)h[7] & MASK25;
    out->v[8] = (uint32_t)h[8] & MASK26;
    out->v[9] = (uint32_t)h[9] & MASK25;
}

void tfa_fe_zero(tfa_fe *h)
{
    memset(h, 0, sizeof(*h));
}

void tfa_fe_one(tfa_fe *h)
{
    memset(h, 0, sizeof(*h));
    h->v[0] = 1;
}

static uint32_t prv_load32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

void tfa_fe_frombytes(tfa_fe *h, const uint8_t s[32])
{
    /* Limb i starts at bit ceil(25.5*i); the bit offset within its first byte is at most 6 and the
     * width at most 26, so one 32-bit little-endian load per limb suffices (last load: bytes 28..31). */
    unsigned bit = 0;
    for (unsigned i = 0; i < 10u; i++) {
        unsigned w = prv_width(i);
        h->v[i] = (prv_load32(s + bit / 8u) >> (bit % 8u)) & ((1u << w) - 1u);
        bit += w;
    }
}

/* Propagates carries upwards without wrapping; returns the carry out of bit 255. */
static uint32_t prv_propagate(uint32_t t[10])
{
    uint32_t carry = 0;
    for (unsigned i = 0; i < 10u; i++) {
        unsigned w = prv_width(i);
        t[i] += carry;
        carry = t[i] >> w;
        t[i] &= (1u << w) - 1u;
    }
    return carry;
}

void tfa_fe_tobytes(uint8_t s[32], const tfa_fe *f)
{
    /* f < 2p, so q = (f + 19) >> 255 is 1 exactly when f >= p; then f - q*p = f + 19q - q*2^255. */
    uint32_t t[10];
    memcpy(t, f->v, sizeof(t));
    t[0] += 19u;
    uint32_t q = prv_propagate(t);
    memcpy(t, f->v, sizeof(t));
    t[0] += 19u * q;
    (void)prv_propagate(t); /* the carry out is q: dropping it subtracts q*2^255 */

    uint64_t acc = 0;
    unsigned nbits = 0;
    unsigned out = 0;
    for (unsigned i = 0; i < 10u; i++) {
        acc |= (uint64_t)t[i] << nbits;
        nbits += prv_width(i);
        while (nbits >= 8u) {
            s[out++] = (uint8_t)acc;
            acc >>= 8;
            nbits -= 8u;
        }
    }
    s[out] = (uint8_t)acc; /* the last 7 bits; bit 255 is 0 */
}

void tfa_fe_add(tfa_fe *h, const tfa_fe *f, const tfa_fe *g)
{
    for (unsigned i = 0; i < 10u; i++) {
        h->v[i] = f->v[i] + g->v[i];
    }
    prv_carry32(h->v);
}

void tfa_fe_sub(tfa_fe *h, const tfa_fe *f, const tfa_fe *g)
{
    for (unsigned i = 0; i < 10u; i++) {
        h->v[i] = f->v[i] + prv_two_p[i] - g->v[i];
    }
    prv_carry32(h->v);
}

void tfa_fe_neg(tfa_fe *h, const tfa_fe *f)
{
    tfa_fe zero;
    tfa_fe_zero(&zero);
    tfa_fe_sub(h, &zero, f);
}

/* 32x32 -> 64-bit product: one UMULL/UMLAL on the Cortex-M4. */
#define M(a, b) ((uint64_t)(a) * (b))

void tfa_fe_mul(tfa_fe *h, const tfa_fe *f, const tfa_fe *g)
{
    /* Schoolbook 10x10, fully unrolled so the 100 products become UMULL/UMLAL with the operands in
     * registers. Limb offsets add up exactly except odd*odd (one bit short: factor 2, put on f) and
     * columns past limb 9 wrap with 2^255 = 19 (put on g). All pre-scaled operands stay below 2^32
     * (19 * 2^26 < 2^31) and every column below 2^61. */
    const uint32_t f0 = f->v[0], f1 = f->v[1], f2 = f->v[2], f3 = f->v[3], f4 = f->v[4];
    const uint32_t f5 = f->v[5], f6 = f->v[6], f7 = f->v[7], f8 = f->v[8], f9 = f->v[9];
    const uint32_t g0 = g->v[0], g1 = g->v[1], g2 = g->v[2], g3 = g->v[3], g4 = g->v[4];
    const uint32_t g5 = g->v[5], g6 = g->v[6], g7 = g->v[7], g8 = g->v[8], g9 = g->v[9];
    const uint32_t f1_2 = 2u * f1, f3_2 = 2u * f3, f5_2 = 2u * f5, f7_2 = 2u * f7, f9_2 = 2u * f9;
    const uint32_t g1_19 = 19u * g1, g2_19 = 19u * g2, g3_19 = 19u * g3, g4_19 = 19u * g4, g5_19 = 19u * g5;
    const uint32_t g6_19 = 19u * g6, g7_19 = 19u * g7, g8_19 = 19u * g8, g9_19 = 19u * g9;
    uint64_t h0 = M(f0, g0) + M(f1_2, g9_19) + M(f2, g8_19) + M(f3_2, g7_19) + M(f4, g6_19) + M(f5_2, g5_19)
        + M(f6, g4_19) + M(f7_2, g3_19) + M(f8, g2_19) + M(f9_2, g1_19);
    uint64_t h1 = M(f0, g1) + M(f1, g0) + M(f2, g9_19) + M(f3, g8_19) + M(f4, g7_19) + M(f5, g6_19)
        + M(f6, g5_19) + M(f7, g4_19) + M(f8, g3_19) + M(f9, g2_19);
    uint64_t h2 = M(f0, g2) + M(f1_2, g1) + M(f2, g0) + M(f3_2, g9_19) + M(f4, g8_19) + M(f5_2, g7_19)
        + M(f6, g6_19) + M(f7_2, g5_19) + M(f8, g4_19) + M(f9_2, g3_19);
    uint64_t h3 = M(f0, g3) + M(f1, g2) + M(f2, g1) + M(f3, g0) + M(f4, g9_19) + M(f5, g8_19) + M(f6, g7_19)
        + M(f7, g6_19) + M(f8, g5_19) + M(f9, g4_19);
    uint64_t h4 = M(f0, g4) + M(f1_2, g3) + M(f2, g2) + M(f3_2, g1) + M(f4, g0) + M(f5_2, g9_19)
        + M(f6, g8_19) + M(f7_2, g7_19) + M(f8, g6_19) + M(f9_2, g5_19);
    uint64_t h5 = M(f0, g5) + M(f1, g4) + M(f2, g3) + M(f3, g2) + M(f4, g1) + M(f5, g0) + M(f6, g9_19)
        + M(f7, g8_19) + M(f8, g7_19) + M(f9, g6_19);
    uint64_t h6 = M(f0, g6) + M(f1_2, g5) + M(f2, g4) + M(f3_2, g3) + M(f4, g2) + M(f5_2, g1) + M(f6, g0)
        + M(f7_2, g9_19) + M(f8, g8_19) + M(f9_2, g7_19);
    uint64_t h7 = M(f0, g7) + M(f1, g6) + M(f2, g5) + M(f3, g4) + M(f4, g3) + M(f5, g2) + M(f6, g1)
        + M(f7, g0) + M(f8, g9_19) + M(f9, g8_19);
    uint64_t h8 = M(f0, g8) + M(f1_2, g7) + M(f2, g6) + M(f3_2, g5) + M(f4, g4) + M(f5_2, g3) + M(f6, g2)
        + M(f7_2, g1) + M(f8, g0) + M(f9_2, g9_19);
    uint64_t h9 = M(f0, g9) + M(f1, g8) + M(f2, g7) + M(f3, g6) + M(f4, g5) + M(f5, g4) + M(f6, g3)
        + M(f7, g2) + M(f8, g1) + M(f9, g0);
    uint64_t col[10] = {h0, h1, h2, h3, h4, h5, h6, h7, h8, h9};
    prv_carry64(h, col);
}

void tfa_fe_sq(tfa_fe *h, const tfa_fe *f)
{
    /* As tfa_fe_mul with g = f: the symmetric products f_i*f_j (i < j) appear once with a factor 2.
     * A product's total factor (up to 2 * 2 * 19 = 76) is split between its two operands so each
     * stays below 2^32: 38 * 2^25.01 < 2^31. */
    const uint32_t f0 = f->v[0], f1 = f->v[1], f2 = f->v[2], f3 = f->v[3], f4 = f->v[4];
    const uint32_t f5 = f->v[5], f6 = f->v[6], f7 = f->v[7], f8 = f->v[8], f9 = f->v[9];
    const uint32_t f0_2 = 2u * f0, f1_2 = 2u * f1, f2_2 = 2u * f2, f3_2 = 2u * f3, f4_2 = 2u * f4;
    const uint32_t f5_2 = 2u * f5, f6_2 = 2u * f6, f7_2 = 2u * f7, f8_2 = 2u * f8, f9_2 = 2u * f9;
    const uint32_t f5_19 = 19u * f5, f6_19 = 19u * f6, f7_19 = 19u * f7, f8_19 = 19u * f8, f9_19 = 19u * f9;
    const uint32_t f7_38 = 38u * f7, f9_38 = 38u * f9;
    uint64_t h0 = M(f0, f0) + M(f1_2, f9_38) + M(f2_2, f8_19) + M(f3_2, f7_38) + M(f4_2, f6_19)
        + M(f5_2, f5_19);
    uint64_t h1 = M(f0_2, f1) + M(f2_2, f9_19) + M(f3_2, f8_19) + M(f4_2, f7_19) + M(f5_2, f6_19);
    uint64_t h2 = M(f0_2, f2) + M(f1_2, f1) + M(f3_2, f9_38) + M(f4_2, f8_19) + M(f5_2, f7_38)
        + M(f6, f6_19);
    uint64_t h3 = M(f0_2, f3) + M(f1_2, f2) + M(f4_2, f9_19) + M(f5_2, f8_19) + M(f6_2, f7_19);
    uint64_t h4 = M(f0_2, f4) + M(f1_2, f3_2) + M(f2, f2) + M(f5_2, f9_38) + M(f6_2, f8_19) + M(f7_2, f7_19);
    uint64_t h5 = M(f0_2, f5) + M(f1_2, f4) + M(f2_2, f3) + M(f6_2, f9_19) + M(f7_2, f8_19);
    uint64_t h6 = M(f0_2, f6) + M(f1_2, f5_2) + M(f2_2, f4) + M(f3_2, f3) + M(f7_2, f9_38) + M(f8, f8_19);
    uint64_t h7 = M(f0_2, f7) + M(f1_2, f6) + M(f2_2, f5) + M(f3_2, f4) + M(f8_2, f9_19);
    uint64_t h8 = M(f0_2, f8) + M(f1_2, f7_2) + M(f2_2, f6) + M(f3_2, f5_2) + M(f4, f4) + M(f9_2, f9_19);
    uint64_t h9 = M(f0_2, f9) + M(f1_2, f8) + M(f2_2, f7) + M(f3_2, f6) + M(f4_2, f5);
    uint64_t col[10] = {h0, h1, h2, h3, h4, h5, h6, h7, h8, h9};
    prv_carry64(h, col);
}

#undef M

static void prv_sq_times(tfa_fe *h, const tfa_fe *f, unsigned n)
{
    tfa_fe_sq(h, f);
    for (unsigned i = 1; i < n; i++) {
        tfa_fe_sq(h, h);
    }
}

void tfa_fe_pow22523(tfa_fe *h, const tfa_fe *z)
{
    /* Addition chain: names say which power of z each holds (z_a_b = z^(2^a - 2^b)). */
    tfa_fe z2, z9, z11, z_5_0, z_10_0, z_20_0, z_40_0, z_50_0, z_100_0, z_200_0, z_250_0, t;
    tfa_fe_sq(&z2, z);                /* z^2 */
    prv_sq_times(&t, &z2, 2);         /* z^8 */
    tfa_fe_mul(&z9, &t, z);           /* z^9 */
    tfa_fe_mul(&z11, &z9, &z2);       /* z^11 */
    tfa_fe_sq(&t, &z11);              /* z^22 */
    tfa_fe_mul(&z_5_0, &t, &z9);      /* z^31 = z^(2^5 - 1) */
    prv_sq_times(&t, &z_5_0, 5);
    tfa_fe_mul(&z_10_0, &t, &z_5_0);  /* z^(2^10 - 1) */
    prv_sq_times(&t, &z_10_0, 10);
    tfa_fe_mul(&z_20_0, &t, &z_10_0); /* z^(2^20 - 1) */
    prv_sq_times(&t, &z_20_0, 20);
    tfa_fe_mul(&z_40_0, &t, &z_20_0); /* z^(2^40 - 1) */
    prv_sq_times(&t, &z_40_0, 10);
    tfa_fe_mul(&z_50_0, &t, &z_10_0); /* z^(2^50 - 1) */
    prv_sq_times(&t, &z_50_0, 50);
    tfa_fe_mul(&z_100_0, &t, &z_50_0); /* z^(2^100 - 1) */
    prv_sq_times(&t, &z_100_0, 100);
    tfa_fe_mul(&z_200_0, &t, &z_100_0); /* z^(2^200 - 1) */
    prv_sq_times(&t, &z_200_0, 50);
    tfa_fe_mul(&z_250_0, &t, &z_50_0); /* z^(2^250 - 1) */
    prv_sq_times(&t, &z_250_0, 2);     /* z^(2^252 - 4) */
    tfa_fe_mul(h, &t, z);              /* z^(2^252 - 3) */
}

void tfa_fe_invert(tfa_fe *h, const tfa_fe *f)
{
    /* p - 2 = 2^255 - 21 = 8 * (2^252 - 3) + 3. */
    tfa_fe t, f3;
    tfa_fe_pow22523(&t, f);
    prv_sq_times(&t, &t, 3);
    tfa_fe_sq(&f3, f);
    tfa_fe_mul(&f3, &f3, f);
    tfa_fe_mul(h, &t, &f3);
}

int tfa_fe_iszero(const tfa_fe *f)
{
    uint8_t s[32];
    tfa_fe_tobytes(s, f);
    uint8_t acc = 0;
    for (unsigned i = 0; i < 32u; i++) {
        acc |= s[i];
    }
    return acc == 0;
}

int tfa_fe_equal(const tfa_fe *f, const tfa_fe *g)
{
    tfa_fe d;
    tfa_fe_sub(&d, f, g);
    return tfa_fe_iszero(&d);
}

int tfa_fe_isodd(const tfa_fe *f)
{
    uint8_t s[32];
    tfa_fe_tobytes(s, f);
    return s[0] & 1;
}
