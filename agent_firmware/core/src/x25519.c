/* X25519 (RFC 7748 section 5): the Montgomery ladder over the Ed25519 field code (fe25519.c). The field
 * operations have no data-dependent branches or indexes and the ladder swaps with masks, so the time does
 * not depend on the secret scalar. */
#include "tfa/x25519.h"

#include <string.h>

#include "fe25519.h"
#include "tfa/kdf.h"

/* (A + 2) / 4 for Curve25519's A = 486662: the ladder's doubling constant. */
static const tfa_fe prv_a24 = {{121665u, 0, 0, 0, 0, 0, 0, 0, 0, 0}};

/* Swaps f and g when bit is 1, with the same memory accesses either way. */
static void prv_cswap(tfa_fe *f, tfa_fe *g, uint32_t bit)
{
    uint32_t mask = 0u - bit;
    for (unsigned i = 0; i < 10u; i++) {
        uint32_t x = mask & (f->v[i] ^ g->v[i]);
        f->v[i] ^= x;
        g->v[i] ^= x;
    }
}

int tfa_x25519(uint8_t out[32], const uint8_t scalar[32], const uint8_t u[32])
{
    uint8_t k[32];
    memcpy(k, scalar, 32);
    k[0] &= 248u;
    k[31] &= 127u;
    k[31] |= 64u;

    tfa_fe x1, x2, z2, x3, z3, a, aa, b, bb, e, c, d, da, cb;
    tfa_fe_frombytes(&x1, u); /* ignores bit 255; values in p..2^255-1 are used as they are (RFC) */
    tfa_fe_one(&x2);
    tfa_fe_zero(&z2);
    x3 = x1;
    tfa_fe_one(&z3);
    uint32_t swap = 0;
    for (int t = 254; t >= 0; t--) {
        uint32_t bit = (uint32_t)(k[t >> 3] >> (t & 7)) & 1u;
        swap ^= bit;
        prv_cswap(&x2, &x3, swap);
        prv_cswap(&z2, &z3, swap);
        swap = bit;
        tfa_fe_add(&a, &x2, &z2);
        tfa_fe_sq(&aa, &a);
        tfa_fe_sub(&b, &x2, &z2);
        tfa_fe_sq(&bb, &b);
        tfa_fe_sub(&e, &aa, &bb);
        tfa_fe_add(&c, &x3, &z3);
        tfa_fe_sub(&d, &x3, &z3);
        tfa_fe_mul(&da, &d, &a);
        tfa_fe_mul(&cb, &c, &b);
        tfa_fe_add(&x3, &da, &cb);
        tfa_fe_sq(&x3, &x3);
        tfa_fe_sub(&z3, &da, &cb);
        tfa_fe_sq(&z3, &z3);
        tfa_fe_mul(&z3, &z3, &x1);
        tfa_fe_mul(&x2, &aa, &bb);
        tfa_fe_mul(&z2, &prv_a24, &e);
        tfa_fe_add(&z2, &z2, &aa);
        tfa_fe_mul(&z2, &z2, &e);
    }
    prv_cswap(&x2, &x3, swap);
    prv_cswap(&z2, &z3, swap);
    tfa_fe_invert(&z2, &z2);
    tfa_fe_mul(&x2, &x2, &z2);
    tfa_fe_tobytes(out, &x2);

    uint8_t any = 0;
    for (unsigned i = 0; i < 32u; i++) {
        any |= out[i];
    }
    tfa_wipe(k, sizeof(k));
    tfa_wipe(&x2, sizeof(x2));
    tfa_wipe(&z2, sizeof(z2));
    tfa_wipe(&x3, sizeof(x3));
    tfa_wipe(&z3, sizeof(z3));
    return any == 0u ? -1 : 0;
}

void tfa_x25519_base(uint8_t public_key[32], const uint8_t scalar[32])
{
    static const uint8_t nine[32] = {9};
    (void)tfa_x25519(public_key, scalar, nine); /* never zero: 9 has prime order */
}
