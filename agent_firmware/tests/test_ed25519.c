/* Ed25519 strict verification: RFC 8032 section 7.1 vectors, 1000 signatures made by `cryptography`
 * (vectors/ed25519_random.txt) each also with one bit flipped in the message, the signature and the
 * public key, the strictness edge cases of vectors/ed25519_edge.txt, and direct checks of the private
 * field, group and scalar helpers (including the generated base-point table). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/src/fe25519.h"
#include "../core/src/ge25519.h"
#include "../core/src/sc25519.h"
#include "check.h"
#include "test_util.h"
#include "tfa/ed25519.h"

#define MAX_MSG 1100u
#define LINE_CAP 4096u

struct vector {
    char name[128];
    int expect_valid;
    uint8_t pk[32];
    uint8_t sig[64];
    uint8_t msg[MAX_MSG];
    size_t msg_len;
};

/* Splits a line into whitespace-separated fields in place; returns the field count. */
static int prv_split(char *line, char *fields[], int max_fields)
{
    int n = 0;
    char *c = line;
    while (*c != '\0') {
        while (*c == ' ' || *c == '\t' || *c == '\r' || *c == '\n') {
            *c++ = '\0';
        }
        if (*c == '\0') {
            break;
        }
        if (n == max_fields) {
            return n + 1; /* too many fields */
        }
        fields[n++] = c;
        while (*c != '\0' && *c != ' ' && *c != '\t' && *c != '\r' && *c != '\n') {
            c++;
        }
    }
    return n;
}

static int prv_fill(struct vector *v, const char *pk_hex, const char *sig_hex, const char *msg_hex)
{
    int msg_len = test_unhex(msg_hex, v->msg, sizeof(v->msg));
    if (test_unhex(pk_hex, v->pk, 32) != 32 || test_unhex(sig_hex, v->sig, 64) != 64 || msg_len < 0) {
        return -1;
    }
    v->msg_len = (size_t)msg_len;
    return 0;
}

/* Reads a vector file whose lines are `[expect] [name] pk sig msg`; calls check() on each. */
static int prv_for_each_vector(const char *path, int has_expect, int has_name,
                               void (*check)(const struct vector *v, unsigned index))
{
    FILE *f = fopen(path, "r");
    CHECK(f != NULL, "cannot open %s (run from agent_firmware/tests)", path);
    if (f == NULL) {
        return 0;
    }
    static char line[LINE_CAP];
    static struct vector v;
    unsigned count = 0;
    const int want_fields = 3 + has_expect + has_name;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (line[0] == '#') {
            continue;
        }
        char *fields[6];
        int n = prv_split(line, fields, 6);
        CHECK(n == want_fields, "%s: line %u has %d fields", path, count, n);
        if (n != want_fields) {
            continue;
        }
        int at = 0;
        v.expect_valid = has_expect ? atoi(fields[at++]) : 1;
        snprintf(v.name, sizeof(v.name), "%s#%u", has_name ? fields[at++] : path, count);
        if (prv_fill(&v, fields[at], fields[at + 1], fields[at + 2]) != 0) {
            CHECK(0, "%s: bad hex in vector %u", path, count);
            continue;
        }
        check(&v, count);
        count++;
    }
    fclose(f);
    return (int)count;
}

/* A valid vector must verify, and must stop verifying after any single bit flip; the flipped bit
 * position is derived from the index so that the 1000 vectors cover all bits of sig and key. */
static void prv_check_valid_and_flips(const struct vector *v, unsigned index)
{
    static uint8_t msg[MAX_MSG];
    uint8_t sig[64];
    uint8_t pk[32];
    CHECK(tfa_ed25519_verify(v->sig, v->pk, v->msg, v->msg_len) == 0, "%s: valid signature rejected",
          v->name);

    if (v->msg_len > 0) {
        memcpy(msg, v->msg, v->msg_len);
        unsigned bit = (index * 7919u) % (unsigned)(v->msg_len * 8u);
        msg[bit / 8u] ^= (uint8_t)(1u << (bit % 8u));
        CHECK(tfa_ed25519_verify(v->sig, v->pk, msg, v->msg_len) != 0, "%s: msg bit %u flip accepted",
              v->name, bit);
    } else {
        static const uint8_t extra = 0;
        CHECK(tfa_ed25519_verify(v->sig, v->pk, &extra, 1) != 0, "%s: appended byte accepted", v->name);
    }

    memcpy(sig, v->sig, 64);
    unsigned sig_bit = (index * 131u) % 512u;
    sig[sig_bit / 8u] ^= (uint8_t)(1u << (sig_bit % 8u));
    CHECK(tfa_ed25519_verify(sig, v->pk, v->msg, v->msg_len) != 0, "%s: sig bit %u flip accepted", v->name,
          sig_bit);

    memcpy(pk, v->pk, 32);
    unsigned pk_bit = (index * 37u) % 256u;
    pk[pk_bit / 8u] ^= (uint8_t)(1u << (pk_bit % 8u));
    CHECK(tfa_ed25519_verify(v->sig, pk, v->msg, v->msg_len) != 0, "%s: pk bit %u flip accepted", v->name,
          pk_bit);
}

static void prv_check_expectation(const struct vector *v, unsigned index)
{
    (void)index;
    int rc = tfa_ed25519_verify(v->sig, v->pk, v->msg, v->msg_len);
    CHECK((rc == 0) == (v->expect_valid == 1), "%s: verify returned %d, expected %s", v->name, rc,
          v->expect_valid ? "valid" : "invalid");
    CHECK(rc == 0 || rc == -1, "%s: return value %d is neither 0 nor -1", v->name, rc);
}

static void prv_test_rfc8032(void)
{
    int n = prv_for_each_vector("vectors/ed25519_rfc8032.txt", 0, 1, prv_check_valid_and_flips);
    CHECK(n == 5, "expected the 5 RFC 8032 vectors, read %d", n);

    /* TEST 1 has an empty message: a NULL pointer with length 0 must be accepted. */
    static const char pk1[] = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    static const char sig1[] = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
                               "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";
    uint8_t pk[32];
    uint8_t sig[64];
    CHECK(test_unhex(pk1, pk, 32) == 32 && test_unhex(sig1, sig, 64) == 64, "bad inline hex");
    CHECK(tfa_ed25519_verify(sig, pk, NULL, 0) == 0, "TEST 1 with a NULL message rejected");
}

static void prv_test_random_file(void)
{
    int n = prv_for_each_vector("vectors/ed25519_random.txt", 0, 0, prv_check_valid_and_flips);
    CHECK(n == 1000, "expected 1000 random vectors, read %d", n);
}

static void prv_test_edge_file(void)
{
    int n = prv_for_each_vector("vectors/ed25519_edge.txt", 1, 1, prv_check_expectation);
    CHECK(n >= 30, "expected the edge-case vectors, read %d", n);
}

/* ---- private helpers ---- */

static void prv_le_bytes(uint8_t out[32], uint32_t value)
{
    memset(out, 0, 32);
    for (unsigned i = 0; i < 4u; i++) {
        out[i] = (uint8_t)(value >> (8u * i));
    }
}

static void prv_test_field(void)
{
    /* p, p+1 and 2^255-1 load as themselves but encode canonically as 0, 1 and 18. */
    uint8_t s[32];
    uint8_t out[32];
    uint8_t want[32];
    memset(s, 0xFF, 32);
    s[31] = 0x7F;
    tfa_fe f;
    tfa_fe_frombytes(&f, s);
    tfa_fe_tobytes(out, &f);
    prv_le_bytes(want, 18);
    CHECK(memcmp(out, want, 32) == 0, "2^255-1 did not reduce to 18");
    s[0] = 0xED; /* p */
    tfa_fe_frombytes(&f, s);
    CHECK(tfa_fe_iszero(&f), "p is not zero");
    s[0] = 0xEE; /* p + 1 */
    tfa_fe_frombytes(&f, s);
    tfa_fe one;
    tfa_fe_one(&one);
    CHECK(tfa_fe_equal(&f, &one), "p+1 is not one");
    /* The top bit is ignored on load. */
    s[31] = 0xFF;
    tfa_fe g;
    tfa_fe_frombytes(&g, s);
    CHECK(tfa_fe_equal(&f, &g), "bit 255 not ignored");
    /* sqrt(-1)^2 = -1 and x * x^-1 = 1. */
    tfa_fe sq, minus_one, inv, prod;
    tfa_fe_sq(&sq, &tfa_fe_sqrtm1);
    tfa_fe_neg(&minus_one, &one);
    CHECK(tfa_fe_equal(&sq, &minus_one), "sqrt(-1)^2 != -1");
    tfa_fe_invert(&inv, &tfa_fe_d);
    tfa_fe_mul(&prod, &inv, &tfa_fe_d);
    CHECK(tfa_fe_equal(&prod, &one), "d * d^-1 != 1");
    /* d * 121666 = -121665. */
    tfa_fe k666, k665;
    tfa_fe_zero(&k666);
    k666.v[0] = 121666u;
    tfa_fe_zero(&k665);
    k665.v[0] = 121665u;
    tfa_fe_mul(&prod, &tfa_fe_d, &k666);
    tfa_fe_neg(&k665, &k665);
    CHECK(tfa_fe_equal(&prod, &k665), "d is not -121665/121666");
}

static const char prv_base_hex[] = "5866666666666666666666666666666666666666666666666666666666666666";

static void prv_test_point_decoding(void)
{
    tfa_ge_p3 p;
    uint8_t s[32];
    uint8_t back[32];
    CHECK(test_unhex(prv_base_hex, s, 32) == 32, "bad hex");
    CHECK(tfa_ge_frombytes(&p, s) == 0, "base point does not decode");
    tfa_ge_p3_tobytes(back, &p);
    CHECK(memcmp(back, s, 32) == 0, "base point does not re-encode");
    CHECK(!tfa_ge_has_small_order(&p), "base point reported as small order");

    /* y = 0 is a valid point of order 4 (x = +-sqrt(-1)); its alias y = p is rejected. */
    memset(s, 0, 32);
    CHECK(tfa_ge_frombytes(&p, s) == 0, "y = 0 rejected");
    CHECK(tfa_ge_has_small_order(&p), "y = 0 is not reported as small order");
    memset(s, 0xFF, 32);
    s[0] = 0xED;
    s[31] = 0x7F;
    CHECK(tfa_ge_frombytes(&p, s) == -1, "y = p accepted");
    /* y = 1, x = 0 (identity) is fine; with the sign bit set it is not an encoding. */
    memset(s, 0, 32);
    s[0] = 1;
    CHECK(tfa_ge_frombytes(&p, s) == 0 && tfa_ge_has_small_order(&p), "identity");
    s[31] = 0x80;
    CHECK(tfa_ge_frombytes(&p, s) == -1, "identity with sign bit accepted");
    /* y = 2 is not on the curve. */
    memset(s, 0, 32);
    s[0] = 2;
    CHECK(tfa_ge_frombytes(&p, s) == -1, "y = 2 accepted");
}

/* The generated table must hold (2i+1)B: recompute every entry with the C group law. */
static void prv_test_base_table(void)
{
    uint8_t s[32];
    tfa_ge_p3 base, cur;
    tfa_ge_p1p1 t;
    tfa_ge_p2 p2;
    tfa_ge_cached two_b;
    CHECK(test_unhex(prv_base_hex, s, 32) == 32 && tfa_ge_frombytes(&base, s) == 0, "base point");
    tfa_ge_p3_to_p2(&p2, &base);
    tfa_ge_p2_dbl(&t, &p2);
    tfa_ge_p1p1_to_p3(&cur, &t);
    tfa_ge_p3_to_cached(&two_b, &cur);
    cur = base;
    for (unsigned i = 0; i < TFA_GE_BASE_COUNT; i++) {
        tfa_ge_niels n;
        tfa_ge_base_niels(&n, i);
        tfa_fe ypx, ymx, xy2d, lhs;
        tfa_fe_add(&ypx, &cur.y, &cur.x);
        tfa_fe_sub(&ymx, &cur.y, &cur.x);
        tfa_fe_mul(&xy2d, &cur.t, &tfa_fe_d2);
        tfa_fe_mul(&lhs, &n.y_plus_x, &cur.z);
        int ok = tfa_fe_equal(&lhs, &ypx);
        tfa_fe_mul(&lhs, &n.y_minus_x, &cur.z);
        ok = ok && tfa_fe_equal(&lhs, &ymx);
        tfa_fe_mul(&lhs, &n.xy2d, &cur.z);
        ok = ok && tfa_fe_equal(&lhs, &xy2d);
        CHECK(ok, "base table entry %u is not %uB", i, 2u * i + 1u);
        tfa_ge_add(&t, &cur, &two_b);
        tfa_ge_p1p1_to_p3(&cur, &t);
    }
}

static void prv_test_double_scalarmult(void)
{
    uint8_t s[32];
    uint8_t zero[32] = {0};
    uint8_t one[32];
    tfa_ge_p3 base;
    tfa_ge_p2 r;
    CHECK(test_unhex(prv_base_hex, s, 32) == 32 && tfa_ge_frombytes(&base, s) == 0, "base point");
    prv_le_bytes(one, 1);

    tfa_ge_double_scalarmult_vartime(&r, zero, &base, zero);
    CHECK(tfa_fe_iszero(&r.x) && tfa_fe_equal(&r.y, &r.z), "[0]B + [0]B is not the identity");
    tfa_ge_double_scalarmult_vartime(&r, one, &base, zero);
    CHECK(tfa_ge_p2_equals_affine(&r, &base), "[1]B + [0]B != B");
    tfa_ge_double_scalarmult_vartime(&r, zero, &base, one);
    CHECK(tfa_ge_p2_equals_affine(&r, &base), "[0]B + [1]B != B");

    /* [L-1]B + [1]B = identity, exercising the longest digit strings of both wNAFs. */
    static const char l_minus_1[] = "ecd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010";
    uint8_t lm1[32];
    CHECK(test_unhex(l_minus_1, lm1, 32) == 32, "bad hex");
    tfa_ge_double_scalarmult_vartime(&r, lm1, &base, one);
    CHECK(tfa_fe_iszero(&r.x) && tfa_fe_equal(&r.y, &r.z), "[L-1]B + [1]B is not the identity");
    tfa_ge_double_scalarmult_vartime(&r, one, &base, lm1);
    CHECK(tfa_fe_iszero(&r.x) && tfa_fe_equal(&r.y, &r.z), "[1]B + [L-1]B is not the identity");
}

static void prv_test_scalars(void)
{
    static const char l_hex[] = "edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010";
    uint8_t l[32];
    uint8_t x[64];
    uint8_t out[32];
    uint8_t want[32];
    CHECK(test_unhex(l_hex, l, 32) == 32, "bad hex");
    CHECK(!tfa_sc_is_canonical(l), "L accepted as canonical");
    l[0]--;
    CHECK(tfa_sc_is_canonical(l), "L-1 rejected");
    memset(x, 0, 64);
    memcpy(x, l, 32); /* L - 1 */
    tfa_sc_reduce64(out, x);
    CHECK(memcmp(out, l, 32) == 0, "(L-1) mod L");
    x[0]++; /* L */
    tfa_sc_reduce64(out, x);
    memset(want, 0, 32);
    CHECK(memcmp(out, want, 32) == 0, "L mod L");
    /* 2^512 - 1 mod L, value computed with Python integers. */
    static const char max_mod_l[] = "000f9c44e31106a447938568a71b0ed065bef517d273ecce3d9a307c1b419903";
    memset(x, 0xFF, 64);
    tfa_sc_reduce64(out, x);
    memset(want, 0, 32);
    CHECK(test_unhex(max_mod_l, want, 32) == 32, "bad hex");
    CHECK(memcmp(out, want, 32) == 0, "(2^512-1) mod L");
}

/* Garbage in: random keys and signatures (S forced below 2^252 so the full path runs whenever A and R
 * decode) must all be rejected cleanly; under ASan/UBSan this walks the decode-failure paths too. */
static void prv_test_random_garbage(void)
{
    uint32_t state = 0x12345678u;
    unsigned decodable = 0;
    for (unsigned i = 0; i < 400u; i++) {
        uint8_t pk[32];
        uint8_t sig[64];
        uint8_t msg[16];
        for (unsigned j = 0; j < 112u; j++) {
            state = state * 1664525u + 1013904223u; /* LCG: deterministic, no libc rand() */
            uint8_t byte = (uint8_t)(state >> 24);
            if (j < 32u) {
                pk[j] = byte;
            } else if (j < 96u) {
                sig[j - 32u] = byte;
            } else {
                msg[j - 96u] = byte;
            }
        }
        sig[63] &= 0x0F;
        tfa_ge_p3 a;
        decodable += tfa_ge_frombytes(&a, pk) == 0;
        CHECK(tfa_ed25519_verify(sig, pk, msg, sizeof(msg)) == -1, "random garbage %u accepted", i);
    }
    /* About half of all y values are on the curve. */
    CHECK(decodable > 120u && decodable < 280u, "implausible share of decodable random keys: %u/400",
          decodable);
}

int main(void)
{
    prv_test_field();
    prv_test_point_decoding();
    prv_test_base_table();
    prv_test_double_scalarmult();
    prv_test_scalars();
    prv_test_rfc8032();
    prv_test_edge_file();
    prv_test_random_file();
    prv_test_random_garbage();
    return test_report("test_ed25519");
}
