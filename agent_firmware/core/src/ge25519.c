/* edwards25519 group operations and the double-scalar multiplication used by Ed25519 verification.
 * Formulas: RFC 8032 section 5.1.4 (extended coordinates, a = -1), split as in ge25519.h. */
#include "ge25519.h"

#include <string.h>

/* wNAF width for the variable point A: 8 cached odd multiples (1280 bytes of stack). */
#define A_WINDOW 5
#define A_COUNT (1 << (A_WINDOW - 2))

int tfa_ge_frombytes(tfa_ge_p3 *h, const uint8_t s[32])
{
    /* Canonical y only: reject y >= p, i.e. 2^255-19 .. 2^255-1 (ignoring the sign bit). */
    int y_is_max = (s[31] & 0x7F) == 0x7F && s[0] >= 0xED;
    for (unsigned i = 1; i < 31u && y_is_max; i++) {
        y_is_max = s[i] == 0xFF;
    }
    if (y_is_max) {
        return -1;
    }
    const int sign = s[31] >> 7;

    /* x^2 = u / v with u = y^2 - 1, v = d y^2 + 1; candidate x = u v^3 (u v^7)^((p-5)/8). */
    tfa_fe u, v, v3, vxx, check, one;
    tfa_fe_one(&one);
    tfa_fe_frombytes(&h->y, s);
    tfa_fe_one(&h->z);
    tfa_fe_sq(&u, &h->y);
    tfa_fe_mul(&v, &u, &tfa_fe_d);
    tfa_fe_sub(&u, &u, &one);
    tfa_fe_add(&v, &v, &one);

    tfa_fe_sq(&v3, &v);
    tfa_fe_mul(&v3, &v3, &v);       /* v^3 */
    tfa_fe_sq(&h->x, &v3);
    tfa_fe_mul(&h->x, &h->x, &v);   /* v^7 */
    tfa_fe_mul(&h->x, &h->x, &u);   /* u v^7 */
    tfa_fe_pow22523(&h->x, &h->x);
    tfa_fe_mul(&h->x, &h->x, &v3);
    tfa_fe_mul(&h->x, &h->x, &u);

    tfa_fe_sq(&vxx, &h->x);
    tfa_fe_mul(&vxx, &vxx, &v);
    if (!tfa_fe_equal(&vxx, &u)) {
        tfa_fe_add(&check, &vxx, &u);
        if (!tfa_fe_iszero(&check)) {
            return -1; /* u/v is not a square: not a point */
        }
        tfa_fe_mul(&h->x, &h->x, &tfa_fe_sqrtm1);
    }
    if (tfa_fe_iszero(&h->x) && sign) {
        return -1;
    }
    if (tfa_fe_isodd(&h->x) != sign) {
        tfa_fe_neg(&h->x, &h->x);
    }
    tfa_fe_mul(&h->t, &h->x, &h->y);
    return 0;
}

void tfa_ge_p3_tobytes(uint8_t s[32], const tfa_ge_p3 *p)
{
    tfa_fe zinv, x, y;
    tfa_fe_invert(&zinv, &p->z);
    tfa_fe_mul(&x, &p->x, &zinv);
    tfa_fe_mul(&y, &p->y, &zinv);
    tfa_fe_tobytes(s, &y);
    s[31] = (uint8_t)(s[31] | (tfa_fe_isodd(&x) << 7));
}

void tfa_ge_p3_neg(tfa_ge_p3 *h, const tfa_ge_p3 *p)
{
    tfa_fe_neg(&h->x, &p->x);
    h->y = p->y;
    h->z = p->z;
    tfa_fe_neg(&h->t, &p->t);
}

void tfa_ge_p2_identity(tfa_ge_p2 *h)
{
    tfa_fe_zero(&h->x);
    tfa_fe_one(&h->y);
    tfa_fe_one(&h->z);
}

void tfa_ge_p3_to_p2(tfa_ge_p2 *h, const tfa_ge_p3 *p)
{
    h->x = p->x;
    h->y = p->y;
    h->z = p->z;
}

void tfa_ge_p3_to_cached(tfa_ge_cached *h, const tfa_ge_p3 *p)
{
    tfa_fe_add(&h->y_plus_x, &p->y, &p->x);
    tfa_fe_sub(&h->y_minus_x, &p->y, &p->x);
    h->z = p->z;
    tfa_fe_mul(&h->t2d, &p->t, &tfa_fe_d2);
}

/* p1p1 holds x = X/Z and y = Y/T. */
void tfa_ge_p1p1_to_p2(tfa_ge_p2 *h, const tfa_ge_p1p1 *p)
{
    tfa_fe_mul(&h->x, &p->x, &p->t);
    tfa_fe_mul(&h->y, &p->y, &p->z);
    tfa_fe_mul(&h->z, &p->z, &p->t);
}

void tfa_ge_p1p1_to_p3(tfa_ge_p3 *h, const tfa_ge_p1p1 *p)
{
    tfa_fe_mul(&h->x, &p->x, &p->t);
    tfa_fe_mul(&h->y, &p->y, &p->z);
    tfa_fe_mul(&h->z, &p->z, &p->t);
    tfa_fe_mul(&h->t, &p->x, &p->y);
}

void tfa_ge_p2_dbl(tfa_ge_p1p1 *h, const tfa_ge_p2 *p)
{
    /* A = X^2, B = Y^2, C = 2Z^2, H = A+B, E = H-(X+Y)^2, G = A-B, F = C+G; x = E/G, y = H/F. */
    tfa_fe a, b, c, sum;
    tfa_fe_sq(&a, &p->x);
    tfa_fe_sq(&b, &p->y);
    tfa_fe_sq(&c, &p->z);
    tfa_fe_add(&c, &c, &c);
    tfa_fe_add(&sum, &p->x, &p->y);
    tfa_fe_sq(&sum, &sum);
    tfa_fe_add(&h->y, &a, &b);       /* H */
    tfa_fe_sub(&h->x, &h->y, &sum);  /* E */
    tfa_fe_sub(&h->z, &a, &b);       /* G */
    tfa_fe_add(&h->t, &c, &h->z);    /* F */
}

/* p + q or p - q (minus), q cached (qz = &q->z) or niels (qz = NULL: Z = 1). With A = (Y-X)(y-x),
 * B = (Y+X)(y+x), C = T 2dT', D = 2Z Z': E = B-A, H = B+A, G = D+C, F = D-C; x = E/G, y = H/F (p1p1 x, y,
 * z, t = E, H, G, F). -q swaps y+x with y-x and negates 2dT', which swaps F and G: p - q writes them to
 * each other's place. One function for the four cases: ~400 B less flash than four copies. */
static void prv_add(tfa_ge_p1p1 *h, const tfa_ge_p3 *p, const tfa_fe *ypx, const tfa_fe *ymx, const tfa_fe *t2d,
                    const tfa_fe *qz, int minus)
{
    tfa_fe a, b, c, d;
    tfa_fe_sub(&a, &p->y, &p->x);
    tfa_fe_mul(&a, &a, minus ? ypx : ymx);
    tfa_fe_add(&b, &p->y, &p->x);
    tfa_fe_mul(&b, &b, minus ? ymx : ypx);
    tfa_fe_mul(&c, &p->t, t2d);
    if (qz != NULL) {
        tfa_fe_mul(&d, &p->z, qz);
        tfa_fe_add(&d, &d, &d);
    } else {
        tfa_fe_add(&d, &p->z, &p->z);
    }
    tfa_fe_sub(&h->x, &b, &a);
    tfa_fe_add(&h->y, &b, &a);
    tfa_fe_add(minus ? &h->t : &h->z, &d, &c);
    tfa_fe_sub(minus ? &h->z : &h->t, &d, &c);
}

void tfa_ge_add(tfa_ge_p1p1 *h, const tfa_ge_p3 *p, const tfa_ge_cached *q)
{
    prv_add(h, p, &q->y_plus_x, &q->y_minus_x, &q->t2d, &q->z, 0);
}

void tfa_ge_base_niels(tfa_ge_niels *h, unsigned i)
{
    tfa_fe_frombytes(&h->y_plus_x, tfa_ge_base_odd_multiples[i][0]);
    tfa_fe_frombytes(&h->y_minus_x, tfa_ge_base_odd_multiples[i][1]);
    tfa_fe_frombytes(&h->xy2d, tfa_ge_base_odd_multiples[i][2]);
}

int tfa_ge_has_small_order(const tfa_ge_p3 *p)
{
    tfa_ge_p2 r;
    tfa_ge_p1p1 t;
    tfa_ge_p3_to_p2(&r, p);
    for (unsigned i = 0; i < 3u; i++) {
        tfa_ge_p2_dbl(&t, &r);
        tfa_ge_p1p1_to_p2(&r, &t);
    }
    return tfa_fe_iszero(&r.x) && tfa_fe_equal(&r.y, &r.z);
}

int tfa_ge_p2_equals_affine(const tfa_ge_p2 *p, const tfa_ge_p3 *q)
{
    tfa_fe qx, qy;
    tfa_fe_mul(&qx, &q->x, &p->z);
    tfa_fe_mul(&qy, &q->y, &p->z);
    return tfa_fe_equal(&qx, &p->x) && tfa_fe_equal(&qy, &p->y);
}

/* Width-w non-adjacent form: every non-zero digit is odd, |digit| < 2^(w-1), and any w consecutive
 * digits hold at most one non-zero. s < 2^253, so 256 digits always suffice. */
static void prv_wnaf(int8_t naf[256], const uint8_t s[32], unsigned w)
{
    uint32_t x[9] = {0}; /* one spare word: a negative digit carries upwards */
    for (unsigned i = 0; i < 32u; i++) {
        x[i / 4u] |= (uint32_t)s[i] << (8u * (i % 4u));
    }
    memset(naf, 0, 256);
    const uint32_t mask = (1u << w) - 1u;
    unsigned pos = 0;
    while (pos < 256u) {
        unsigned word = pos / 32u;
        unsigned shift = pos % 32u;
        if (((x[word] >> shift) & 1u) == 0) {
            pos++;
            continue;
        }
        uint64_t pair = x[word] | ((uint64_t)x[word + 1u] << 32);
        uint32_t d = (uint32_t)(pair >> shift) & mask;
        /* Clear the w bits just consumed. */
        uint64_t clear = (uint64_t)mask << shift;
        x[word] &= ~(uint32_t)clear;
        x[word + 1u] &= ~(uint32_t)(clear >> 32);
        if (d >= (1u << (w - 1u))) {
            /* digit d - 2^w < 0: x - (d - 2^w) 2^pos = (x with the bits cleared) + 2^(pos+w). */
            naf[pos] = (int8_t)((int32_t)d - (int32_t)(1u << w));
            unsigned carry_pos = pos + w;
            for (unsigned k = carry_pos / 32u; k < 9u; k++) {
                uint32_t add = (k == carry_pos / 32u) ? (1u << (carry_pos % 32u)) : 1u;
                x[k] += add;
                if (x[k] >= add) {
                    break; /* no wrap, carry absorbed */
                }
            }
        } else {
            naf[pos] = (int8_t)d;
        }
        pos += w;
    }
}

/* odd[i] = (2i+1)P for i < A_COUNT. A separate function so its temporaries are off the stack
 * before the main loop runs. */
static void prv_odd_multiples(tfa_ge_cached odd[A_COUNT], const tfa_ge_p3 *p)
{
    tfa_ge_p2 p2;
    tfa_ge_p1p1 t;
    tfa_ge_p3 cur;
    tfa_ge_cached two_p;
    tfa_ge_p3_to_p2(&p2, p);
    tfa_ge_p2_dbl(&t, &p2);
    tfa_ge_p1p1_to_p3(&cur, &t);
    tfa_ge_p3_to_cached(&two_p, &cur);
    tfa_ge_p3_to_cached(&odd[0], p);
    cur = *p;
    for (unsigned i = 1; i < A_COUNT; i++) {
        tfa_ge_add(&t, &cur, &two_p);
        tfa_ge_p1p1_to_p3(&cur, &t);
        tfa_ge_p3_to_cached(&odd[i], &cur);
    }
}

void tfa_ge_double_scalarmult_vartime(tfa_ge_p2 *r, const uint8_t a[32], const tfa_ge_p3 *p,
                                      const uint8_t b[32])
{
    int8_t naf_a[256];
    int8_t naf_b[256];
    tfa_ge_cached odd_a[A_COUNT]; /* P, 3P, 5P, ..., 15P */
    tfa_ge_p1p1 t;
    tfa_ge_p3 u;
    tfa_ge_niels n;

    prv_wnaf(naf_a, a, A_WINDOW);
    prv_wnaf(naf_b, b, TFA_GE_BASE_WINDOW);
    prv_odd_multiples(odd_a, p);

    int top = 255;
    while (top >= 0 && naf_a[top] == 0 && naf_b[top] == 0) {
        top--;
    }
    /* Left to right: one doubling per digit, an addition for each non-zero digit of either scalar. */
    tfa_ge_p2_identity(r);
    for (int i = top; i >= 0; i--) {
        tfa_ge_p2_dbl(&t, r);
        const int da = naf_a[i];
        const int db = naf_b[i];
        if (da != 0) {
            const tfa_ge_cached *q = &odd_a[(da < 0 ? -da : da) / 2];
            tfa_ge_p1p1_to_p3(&u, &t);
            prv_add(&t, &u, &q->y_plus_x, &q->y_minus_x, &q->t2d, &q->z, da < 0);
        }
        if (db != 0) {
            tfa_ge_p1p1_to_p3(&u, &t);
            tfa_ge_base_niels(&n, (unsigned)((db < 0 ? -db : db) / 2));
            prv_add(&t, &u, &n.y_plus_x, &n.y_minus_x, &n.xy2d, NULL, db < 0);
        }
        tfa_ge_p1p1_to_p2(r, &t);
    }
}
