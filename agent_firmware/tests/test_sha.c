/* SHA-256 / SHA-512: FIPS 180-4 example vectors, plus every length 0..300 against hashlib
 * (vectors/sha_random.txt, made by make_crypto_vectors.py) both one-shot and with the message fed
 * to update() split at every possible boundary. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "test_util.h"
#include "tfa/sha256.h"
#include "tfa/sha512.h"

#define MAX_MSG 512u

static void prv_expect_hex(const uint8_t *got, size_t len, const char *want_hex, const char *what)
{
    uint8_t want[64];
    int n = test_unhex(want_hex, want, sizeof(want));
    CHECK(n == (int)len, "%s: bad expected hex", what);
    CHECK(n == (int)len && memcmp(got, want, len) == 0, "%s: digest mismatch", what);
}

struct fips_vector {
    const char *msg;
    const char *sha256;
    const char *sha512;
};

static const struct fips_vector prv_fips[] = {
    {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
     "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d"
     "4423643ce80e2a9ac94fa54ca49f"},
    {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b9"
     "31bd47417a81a538327af927da3e"},
    /* 448 bits */
    {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
     "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
     "204a8fc6dda82f0a0ced7beb8e08a41657c16ef468b228a8279be331a703c33596fd15c13b1b07f9aa1d3bea57789ca031ad"
     "85c7a71dd70354ec631238ca3445"},
    /* 896 bits */
    {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopq"
     "rstnopqrstu",
     "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1",
     "8e959b75dae313da8cf4f72814fc143f8f7779c6eb9f7fa17299aeadb6889018501d289e4900f7e4331b99dec4b5433ac7d3"
     "29eeb6dd26545e96e55b874be909"},
};

static void prv_test_fips(void)
{
    for (size_t i = 0; i < sizeof(prv_fips) / sizeof(prv_fips[0]); i++) {
        const uint8_t *m = (const uint8_t *)prv_fips[i].msg;
        size_t len = strlen(prv_fips[i].msg);
        uint8_t d256[32];
        uint8_t d512[64];
        tfa_sha256(m, len, d256);
        tfa_sha512(m, len, d512);
        prv_expect_hex(d256, 32, prv_fips[i].sha256, prv_fips[i].msg);
        prv_expect_hex(d512, 64, prv_fips[i].sha512, prv_fips[i].msg);
    }
}

/* One million 'a', fed in uneven 997-byte chunks so buffering across blocks is exercised too. */
static void prv_test_million_a(void)
{
    static uint8_t chunk[997];
    memset(chunk, 'a', sizeof(chunk));
    tfa_sha256_ctx c256;
    tfa_sha512_ctx c512;
    tfa_sha256_init(&c256);
    tfa_sha512_init(&c512);
    size_t left = 1000000u;
    while (left > 0) {
        size_t n = left < sizeof(chunk) ? left : sizeof(chunk);
        tfa_sha256_update(&c256, chunk, n);
        tfa_sha512_update(&c512, chunk, n);
        left -= n;
    }
    uint8_t d256[32];
    uint8_t d512[64];
    tfa_sha256_final(&c256, d256);
    tfa_sha512_final(&c512, d512);
    prv_expect_hex(d256, 32, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0", "1M a");
    prv_expect_hex(d512, 64,
                   "e718483d0ce769644e2e42c7bc15b4638e1f98b13b2044285632a803afa973eb"
                   "de0ff244877ea60a4cb0432ce577c31beb009c5c2c49aa2e4eadb217ad8cc09b",
                   "1M a");
}

/* Feeds msg in two pieces split at `split`, with an empty update in between (NULL data allowed). */
static void prv_split_digests(const uint8_t *msg, size_t len, size_t split, uint8_t d256[32],
                              uint8_t d512[64])
{
    tfa_sha256_ctx c256;
    tfa_sha512_ctx c512;
    tfa_sha256_init(&c256);
    tfa_sha512_init(&c512);
    tfa_sha256_update(&c256, msg, split);
    tfa_sha512_update(&c512, msg, split);
    tfa_sha256_update(&c256, NULL, 0);
    tfa_sha512_update(&c512, NULL, 0);
    tfa_sha256_update(&c256, msg + split, len - split);
    tfa_sha512_update(&c512, msg + split, len - split);
    tfa_sha256_final(&c256, d256);
    tfa_sha512_final(&c512, d512);
}

static void prv_test_random_file(void)
{
    FILE *f = fopen("vectors/sha_random.txt", "r");
    CHECK(f != NULL, "cannot open vectors/sha_random.txt (run from agent_firmware/tests)");
    if (f == NULL) {
        return;
    }
    static char line[4096];
    static char msg_hex[2 * MAX_MSG + 8];
    char h256[80];
    char h512[160];
    uint8_t msg[MAX_MSG];
    int count = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (line[0] == '#') {
            continue;
        }
        unsigned want_len = 0;
        if (sscanf(line, "%u %1031s %79s %159s", &want_len, msg_hex, h256, h512) != 4) {
            CHECK(0, "malformed line: %s", line);
            continue;
        }
        int len = test_unhex(msg_hex, msg, sizeof(msg));
        CHECK(len == (int)want_len, "length mismatch on line for len %u", want_len);
        if (len < 0) {
            continue;
        }
        uint8_t d256[32];
        uint8_t d512[64];
        tfa_sha256(msg, (size_t)len, d256);
        tfa_sha512(msg, (size_t)len, d512);
        prv_expect_hex(d256, 32, h256, "random sha256 one-shot");
        prv_expect_hex(d512, 64, h512, "random sha512 one-shot");
        for (size_t split = 0; split <= (size_t)len; split++) {
            uint8_t s256[32];
            uint8_t s512[64];
            prv_split_digests(msg, (size_t)len, split, s256, s512);
            CHECK(memcmp(s256, d256, 32) == 0, "sha256 len %d split %zu", len, split);
            CHECK(memcmp(s512, d512, 64) == 0, "sha512 len %d split %zu", len, split);
        }
        count++;
    }
    fclose(f);
    CHECK(count == 301, "expected 301 random vectors, read %d", count);
}

int main(void)
{
    prv_test_fips();
    prv_test_million_a();
    prv_test_random_file();
    return test_report("test_sha");
}
