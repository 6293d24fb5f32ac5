/* Payload encryption primitives against vectors/encryption.txt (make_encryption_vectors.py: RFC 7748,
 * RFC 8439, RFC 4231, RFC 5869 vectors, seeded random ones from tinyfleet.signing.encryption, and key
 * wraps): X25519, ChaCha20 (whole, split at every point, and resumed by seek at every offset), HMAC and
 * HKDF (one-shot and incremental), and tfa_key_unwrap, good and refused. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "test_util.h"
#include "tfa/chacha20.h"
#include "tfa/kdf.h"
#include "tfa/key_wrap.h"
#include "tfa/x25519.h"

#define LINE_CAP 8192u
#define MAX_DATA 1024u
#define MAX_FIELDS 8

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
            return n + 1;
        }
        fields[n++] = c;
        while (*c != '\0' && *c != ' ' && *c != '\t' && *c != '\r' && *c != '\n') {
            c++;
        }
    }
    return n;
}

static int prv_counts[5];

static void prv_x25519(char *f[], int n, int line_no)
{
    uint8_t scalar[32], u[32], want[32], got[32];
    CHECK(n == 4 && test_unhex_exact(f[1], scalar, 32) == 0 && test_unhex_exact(f[2], u, 32) == 0,
          "line %d: bad x25519 line", line_no);
    int rc = tfa_x25519(got, scalar, u);
    if (strcmp(f[3], "zero") == 0) {
        CHECK(rc == -1, "line %d: low-order point accepted", line_no);
    } else {
        CHECK(test_unhex_exact(f[3], want, 32) == 0, "line %d: bad output hex", line_no);
        CHECK(rc == 0 && memcmp(got, want, 32) == 0, "line %d: X25519 differs", line_no);
    }
    prv_counts[0]++;
}

/* The whole buffer at once, then split at every point, then from a seek to every offset. */
static void prv_chacha(char *f[], int n, int line_no)
{
    static uint8_t plain[MAX_DATA], want[MAX_DATA], got[MAX_DATA];
    uint8_t key[32], nonce[12];
    CHECK(n == 6 && test_unhex_exact(f[1], key, 32) == 0 && test_unhex_exact(f[2], nonce, 12) == 0,
          "line %d: bad chacha20 line", line_no);
    uint32_t counter = (uint32_t)strtoul(f[3], NULL, 10);
    int len = test_unhex(f[4], plain, sizeof(plain));
    int len2 = test_unhex(f[5], want, sizeof(want));
    CHECK(len >= 0 && len == len2, "line %d: bad data hex", line_no);
    if (len < 0 || len != len2) {
        return;
    }
    size_t size = (size_t)len;
    tfa_chacha20_ctx ctx;
    tfa_chacha20_init(&ctx, key, nonce, counter);
    CHECK(tfa_chacha20_xor(&ctx, got, plain, size) == 0 && memcmp(got, want, size) == 0,
          "line %d: ChaCha20 differs", line_no);
    for (size_t split = 0; split <= size; split += (size > 200u ? 7u : 1u)) {
        tfa_chacha20_init(&ctx, key, nonce, counter);
        memcpy(got, plain, size);
        int rc = tfa_chacha20_xor(&ctx, got, got, split); /* in place */
        rc |= tfa_chacha20_xor(&ctx, got + split, got + split, size - split);
        CHECK(rc == 0 && memcmp(got, want, size) == 0, "line %d: split at %zu differs", line_no, split);
        tfa_chacha20_init(&ctx, key, nonce, counter);
        memset(got, 0, size);
        CHECK(tfa_chacha20_seek(&ctx, split) == 0, "line %d: seek %zu refused", line_no, split);
        rc = tfa_chacha20_xor(&ctx, got + split, plain + split, size - split);
        CHECK(rc == 0 && memcmp(got + split, want + split, size - split) == 0, "line %d: seek %zu differs",
              line_no, split);
    }
    /* The counter ends at 2^32 - 1: one block past the vector's end is refused when it would wrap. */
    uint64_t end_blocks = ((uint64_t)size + 63u) / 64u;
    if ((uint64_t)counter + end_blocks == ((uint64_t)1 << 32) && size % 64u == 0u) {
        uint8_t one = 0;
        tfa_chacha20_init(&ctx, key, nonce, counter);
        CHECK(tfa_chacha20_seek(&ctx, size) == 0, "line %d: seek to the end refused", line_no);
        CHECK(tfa_chacha20_xor(&ctx, &one, &one, 1) == -1, "line %d: counter wrap accepted", line_no);
        CHECK(tfa_chacha20_seek(&ctx, size + 1u) == -1, "line %d: seek past the end accepted", line_no);
    }
    prv_counts[1]++;
}

static void prv_hmac(char *f[], int n, int line_no)
{
    static uint8_t key[MAX_DATA], data[MAX_DATA];
    uint8_t want[32], got[32];
    int klen = n == 4 ? test_unhex(f[1], key, sizeof(key)) : -1;
    int dlen = n == 4 ? test_unhex(f[2], data, sizeof(data)) : -1;
    CHECK(klen >= 0 && dlen >= 0 && test_unhex_exact(f[3], want, 32) == 0, "line %d: bad hmac line", line_no);
    if (klen < 0 || dlen < 0) {
        return;
    }
    tfa_hmac_sha256(key, (size_t)klen, data, (size_t)dlen, got);
    CHECK(memcmp(got, want, 32) == 0, "line %d: HMAC differs", line_no);
    /* incremental, in two pieces */
    tfa_hmac_sha256_ctx ctx;
    size_t half = (size_t)dlen / 2u;
    tfa_hmac_sha256_init(&ctx, key, (size_t)klen);
    tfa_hmac_sha256_update(&ctx, data, half);
    tfa_hmac_sha256_update(&ctx, data + half, (size_t)dlen - half);
    tfa_hmac_sha256_final(&ctx, got);
    CHECK(memcmp(got, want, 32) == 0, "line %d: incremental HMAC differs", line_no);
    prv_counts[2]++;
}

static void prv_hkdf(char *f[], int n, int line_no)
{
    static uint8_t salt[MAX_DATA], ikm[MAX_DATA], info[MAX_DATA], want[MAX_DATA], got[MAX_DATA];
    int slen = n == 6 ? test_unhex(f[1], salt, sizeof(salt)) : -1;
    int ilen = n == 6 ? test_unhex(f[2], ikm, sizeof(ikm)) : -1;
    int nlen = n == 6 ? test_unhex(f[3], info, sizeof(info)) : -1;
    int olen = n == 6 ? test_unhex(f[5], want, sizeof(want)) : -1;
    CHECK(slen >= 0 && ilen >= 0 && nlen >= 0 && olen > 0 && olen == atoi(f[4]), "line %d: bad hkdf line",
          line_no);
    if (slen < 0 || ilen < 0 || nlen < 0 || olen <= 0) {
        return;
    }
    memset(got, 0xA5, sizeof(got));
    int rc = tfa_hkdf_sha256(got, (size_t)olen, salt, (size_t)slen, ikm, (size_t)ilen, info, (size_t)nlen);
    CHECK(rc == 0 && memcmp(got, want, (size_t)olen) == 0, "line %d: HKDF differs", line_no);
    CHECK(got[olen] == 0xA5u, "line %d: HKDF wrote past okm_len", line_no);
    prv_counts[3]++;
}

static void prv_unwrap(char *f[], int n, int line_no)
{
    uint8_t device[32], pub[32], manifest[TFA_MANIFEST_SIZE], wrap[TFA_KEY_WRAP_SIZE], want[32], got[32];
    uint8_t derived[32];
    CHECK(n == 6 && test_unhex_exact(f[1], device, 32) == 0 && test_unhex_exact(f[2], pub, 32) == 0 &&
              test_unhex_exact(f[3], manifest, sizeof(manifest)) == 0 &&
              test_unhex_exact(f[4], wrap, sizeof(wrap)) == 0,
          "line %d: bad unwrap line", line_no);
    tfa_x25519_base(derived, device);
    CHECK(memcmp(derived, pub, 32) == 0, "line %d: device public key differs", line_no);
    memset(got, 0x5A, sizeof(got));
    int rc = tfa_key_unwrap(got, wrap, device, pub, manifest);
    if (strcmp(f[5], "KEY_UNWRAP") == 0) {
        static const uint8_t zero[32];
        CHECK_RC(rc, -TFA_ERR_KEY_UNWRAP, "altered wrap");
        CHECK(memcmp(got, zero, 32) == 0, "line %d: a refused unwrap left key bytes", line_no);
    } else {
        CHECK(test_unhex_exact(f[5], want, 32) == 0, "line %d: bad key hex", line_no);
        CHECK_RC(rc, 0, "good wrap");
        CHECK(memcmp(got, want, 32) == 0, "line %d: unwrapped key differs", line_no);
    }
    prv_counts[4]++;
}

static void prv_test_file(void)
{
    FILE *file = fopen("vectors/encryption.txt", "r");
    CHECK(file != NULL, "cannot open vectors/encryption.txt (run from agent_firmware/tests)");
    if (file == NULL) {
        return;
    }
    static char line[LINE_CAP];
    int line_no = 0;
    while (fgets(line, sizeof(line), file) != NULL) {
        line_no++;
        CHECK(strchr(line, '\n') != NULL, "line %d longer than the buffer", line_no);
        if (line[0] == '#' || line[0] == '\n') {
            continue;
        }
        char *f[MAX_FIELDS];
        int n = prv_split(line, f, MAX_FIELDS);
        if (n < 1) {
            continue;
        }
        if (strcmp(f[0], "x25519") == 0) {
            prv_x25519(f, n, line_no);
        } else if (strcmp(f[0], "chacha20") == 0) {
            prv_chacha(f, n, line_no);
        } else if (strcmp(f[0], "hmac") == 0) {
            prv_hmac(f, n, line_no);
        } else if (strcmp(f[0], "hkdf") == 0) {
            prv_hkdf(f, n, line_no);
        } else if (strcmp(f[0], "unwrap") == 0) {
            prv_unwrap(f, n, line_no);
        } else {
            CHECK(0, "line %d: unknown kind %s", line_no, f[0]);
        }
    }
    fclose(file);
    /* A truncated or emptied file must not pass quietly. */
    CHECK(prv_counts[0] >= 200 && prv_counts[1] >= 60 && prv_counts[2] >= 40 && prv_counts[3] >= 30 &&
              prv_counts[4] >= 200,
          "too few vectors: x25519 %d chacha20 %d hmac %d hkdf %d unwrap %d", prv_counts[0], prv_counts[1],
          prv_counts[2], prv_counts[3], prv_counts[4]);
}

/* Streaming over a long buffer: random chunk sizes, resumed by seek at chunk boundaries, equal to one
 * pass; and HKDF's length limit. */
static void prv_test_long_stream(void)
{
    static uint8_t plain[5000], once[5000], chunked[5000];
    uint8_t key[32], nonce[12];
    uint32_t rng = 0x12345u;
    for (size_t i = 0; i < sizeof(plain); i++) {
        plain[i] = (uint8_t)test_xorshift32(&rng);
    }
    for (size_t i = 0; i < 32u; i++) {
        key[i] = (uint8_t)test_xorshift32(&rng);
    }
    memset(nonce, 0, sizeof(nonce));
    tfa_chacha20_ctx ctx;
    tfa_chacha20_init(&ctx, key, nonce, 0);
    CHECK(tfa_chacha20_xor(&ctx, once, plain, sizeof(plain)) == 0, "one pass refused");
    size_t at = 0;
    while (at < sizeof(plain)) {
        size_t n = 1u + test_xorshift32(&rng) % 300u;
        if (n > sizeof(plain) - at) {
            n = sizeof(plain) - at;
        }
        tfa_chacha20_init(&ctx, key, nonce, 0); /* a "reboot" before every chunk */
        int rc = tfa_chacha20_seek(&ctx, at);
        rc |= tfa_chacha20_xor(&ctx, chunked + at, plain + at, n);
        CHECK(rc == 0, "chunk at %zu refused", at);
        at += n;
    }
    CHECK(memcmp(once, chunked, sizeof(once)) == 0, "resumed stream differs from one pass");
    tfa_chacha20_wipe(&ctx);
    uint8_t okm[8];
    CHECK(tfa_hkdf_sha256(okm, 255u * 32u + 1u, NULL, 0, key, 32, NULL, 0) == -1, "HKDF too long accepted");
}

int main(void)
{
    /* tinyfleet/device/crypto.py gives the context 256 opaque bytes */
    CHECK(sizeof(tfa_chacha20_ctx) <= 256u, "tfa_chacha20_ctx grew to %zu bytes", sizeof(tfa_chacha20_ctx));
    prv_test_file();
    prv_test_long_stream();
    printf("encryption vectors: x25519 %d, chacha20 %d, hmac %d, hkdf %d, unwrap %d\n", prv_counts[0],
           prv_counts[1], prv_counts[2], prv_counts[3], prv_counts[4]);
    return test_report("test_encryption");
}
