/* Framing: COBS + CRC-32 round trips and edge cases (empty bodies, runs of 0x00, blocks of exactly
 * 254/255 non-zero bytes, the maximum length and one byte more, garbage before a frame, truncated
 * frames, every single-bit flip), checked against a reference COBS encoder written here
 * independently of frame.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "test_util.h"
#include "tfa/crc32.h"
#include "tfa/errors.h"
#include "tfa/frame.h"

#define BIG (TFA_FRAME_MAX_DECODED * 2u)

static uint32_t g_rng = 0x12345678u;

static uint8_t prv_rand8(void)
{
    return (uint8_t)test_xorshift32(&g_rng);
}

/* Reference: 0x00, COBS(data || crc_le), 0x00, by the "split at zeros" definition: every zero ends a
 * block; a block of 254 non-zero bytes is emitted with code 0xFF and no implied zero. */
static uint32_t prv_ref_frame(const uint8_t *body, uint32_t len, uint8_t *out)
{
    static uint8_t tmp[BIG + 4];
    memcpy(tmp, body, len);
    uint32_t crc = tfa_crc32(0, body, len);
    for (uint32_t i = 0; i < 4; i++) {
        tmp[len + i] = (uint8_t)(crc >> (8 * i));
    }
    uint32_t n = len + 4;
    uint32_t o = 0;
    out[o++] = 0;
    uint32_t i = 0;
    for (;;) {
        uint32_t run = 0;
        while (i + run < n && tmp[i + run] != 0 && run < 254) {
            run++;
        }
        out[o++] = (uint8_t)(run + 1);
        memcpy(out + o, tmp + i, run);
        o += run;
        i += run;
        if (run == 254) {
            if (i == n) {
                out[o++] = 1; /* canonical: the implied trailing zero is an empty final block */
                break;
            }
            continue;
        }
        if (i == n) {
            break;
        }
        i++; /* skip the zero this block stood for */
    }
    out[o++] = 0;
    return o;
}

/* Feeds bytes; returns the last non-zero push result (0 if none) and copies a ready body. */
static int prv_feed(tfa_frame_decoder_t *d, const uint8_t *bytes, uint32_t n, uint8_t *body, uint32_t *len)
{
    int last = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t bl = 99;
        int rc = tfa_frame_push(d, bytes[i], &bl);
        CHECK(rc == TFA_FRAME_READY || bl == 0, "body_len not zeroed on rc %d", rc);
        if (rc == TFA_FRAME_READY) {
            memcpy(body, d->buf, bl);
            *len = bl;
        }
        if (rc != 0) {
            last = rc;
        }
    }
    return last;
}

static void prv_roundtrip(const uint8_t *body, uint32_t len, const char *what)
{
    static uint8_t enc[TFA_FRAME_MAX_ENCODED];
    static uint8_t ref[BIG * 2];
    static uint8_t rx[TFA_FRAME_MAX_DECODED];
    static uint8_t got[TFA_FRAME_MAX_DECODED];
    uint32_t enc_len = 0;
    int rc = tfa_frame_encode(body, len, enc, sizeof enc, &enc_len);
    CHECK(rc == 0, "%s: encode rc %d", what, rc);
    uint32_t ref_len = prv_ref_frame(body, len, ref);
    CHECK(enc_len == ref_len && memcmp(enc, ref, ref_len) == 0, "%s: differs from reference (%u vs %u)", what,
          enc_len, ref_len);
    CHECK(enc_len <= TFA_FRAME_ENCODED_MAX(len), "%s: %u above bound", what, enc_len);
    for (uint32_t i = 1; i + 1 < enc_len; i++) {
        CHECK(enc[i] != 0, "%s: zero inside frame at %u", what, i);
    }
    tfa_frame_decoder_t d;
    tfa_frame_decoder_init(&d, rx, sizeof rx);
    uint32_t got_len = 0;
    rc = prv_feed(&d, enc, enc_len, got, &got_len);
    CHECK(rc == TFA_FRAME_READY && got_len == len && memcmp(got, body, len) == 0, "%s: decode rc %d len %u",
          what, rc, got_len);
}

static void test_known_bytes(void)
{
    /* Empty body: CRC-32 of nothing is 0, so four zeros, each its own COBS block. */
    uint8_t enc[64];
    uint32_t n = 0;
    CHECK(tfa_frame_encode(NULL, 0, enc, sizeof enc, &n) == 0, "encode empty");
    const uint8_t want[] = {0x00, 0x01, 0x01, 0x01, 0x01, 0x01, 0x00};
    CHECK(n == sizeof want && memcmp(enc, want, n) == 0, "empty frame bytes (n=%u)", n);

    /* "123456789": CRC-32 check value 0xCBF43926, no zero anywhere: one block of 13. */
    const uint8_t msg[] = "123456789";
    CHECK(tfa_frame_encode(msg, 9, enc, sizeof enc, &n) == 0, "encode check string");
    const uint8_t want2[] = {0x00, 0x0E, '1', '2', '3',  '4',  '5',  '6',
                             '7',  '8',  '9', 0x26, 0x39, 0xF4, 0xCB, 0x00};
    CHECK(n == sizeof want2 && memcmp(enc, want2, n) == 0, "check-string frame bytes (n=%u)", n);
}

static void test_roundtrips(void)
{
    static uint8_t body[TFA_FRAME_MAX_BODY];
    char what[64];
    prv_roundtrip(body, 0, "empty");
    /* Runs of zeros, and of non-zero bytes around the 254-byte block size, at every length near it. */
    const uint32_t lens[] = {1,   2,   3,   100, 249, 250, 251, 252, 253, 254, 255,
                             256, 257, 258, 507, 508, 509, 510,
                             1000, TFA_FRAME_MAX_BODY - 1, TFA_FRAME_MAX_BODY};
    for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
        uint32_t len = lens[k];
        memset(body, 0x00, len);
        snprintf(what, sizeof what, "zeros %u", len);
        prv_roundtrip(body, len, what);
        memset(body, 0xA5, len);
        snprintf(what, sizeof what, "0xA5 %u", len);
        prv_roundtrip(body, len, what);
        for (uint32_t i = 0; i < len; i++) {
            body[i] = (uint8_t)(i % 255u + 1u);
        }
        snprintf(what, sizeof what, "ramp %u", len);
        prv_roundtrip(body, len, what);
        for (uint32_t i = 0; i < len; i++) {
            body[i] = (i % 255u == 254u) ? 0 : 0x5A; /* zero right after a 254-byte run */
        }
        snprintf(what, sizeof what, "254-run-zero %u", len);
        prv_roundtrip(body, len, what);
    }
    for (int r = 0; r < 300; r++) {
        uint32_t len = (uint32_t)(prv_rand8() | (prv_rand8() << 8)) % (TFA_FRAME_MAX_BODY + 1u);
        uint8_t density = prv_rand8();
        for (uint32_t i = 0; i < len; i++) {
            body[i] = prv_rand8() < density ? 0 : prv_rand8();
        }
        snprintf(what, sizeof what, "random %d len %u", r, len);
        prv_roundtrip(body, len, what);
    }
}

static void test_non_canonical_accepted(void)
{
    /* 254 non-zero bytes may also end without the final 0x01 block; both decode to the same bytes. */
    static uint8_t body[250];
    memset(body, 0x42, sizeof body);
    uint8_t data[254];
    memcpy(data, body, 250);
    uint32_t crc = tfa_crc32(0, body, 250);
    for (int i = 0; i < 4; i++) {
        data[250 + i] = (uint8_t)(crc >> (8 * i));
    }
    int crc_has_zero = data[250] == 0 || data[251] == 0 || data[252] == 0 || data[253] == 0;
    CHECK(!crc_has_zero, "test premise: crc without zero bytes");
    uint8_t wire[258];
    wire[0] = 0;
    wire[1] = 0xFF;
    memcpy(wire + 2, data, 254);
    wire[256] = 0;
    uint8_t rx[TFA_FRAME_MAX_DECODED], got[TFA_FRAME_MAX_DECODED];
    tfa_frame_decoder_t d;
    tfa_frame_decoder_init(&d, rx, sizeof rx);
    uint32_t got_len = 0;
    int rc = prv_feed(&d, wire, 257, got, &got_len);
    CHECK(rc == TFA_FRAME_READY && got_len == 250 && memcmp(got, body, 250) == 0, "short form rc %d", rc);
}

static void test_limits(void)
{
    static uint8_t body[TFA_FRAME_MAX_BODY + 8];
    static uint8_t enc[BIG * 2];
    uint32_t n = 77;
    memset(body, 0x33, sizeof body);
    CHECK(tfa_frame_encode(body, TFA_FRAME_MAX_BODY + 1, enc, sizeof enc, &n) == -TFA_ERR_FRAME_TOO_LONG,
          "encode above max");
    CHECK(n == 0, "out_len zeroed");
    CHECK(tfa_frame_encode(body, 10, enc, TFA_FRAME_ENCODED_MAX(10) - 1, &n) == -TFA_ERR_BAD_MESSAGE,
          "encode into short buffer");
    CHECK(tfa_frame_encode(body, 10, enc, TFA_FRAME_ENCODED_MAX(10), &n) == 0, "encode into exact bound");

    /* A frame one byte longer than the decoder's buffer: FRAME_TOO_LONG at its end, then recovery. */
    uint8_t rx[TFA_FRAME_MAX_DECODED], got[TFA_FRAME_MAX_DECODED];
    tfa_frame_decoder_t d;
    tfa_frame_decoder_init(&d, rx, sizeof rx);
    uint32_t got_len = 0;
    uint32_t m = prv_ref_frame(body, TFA_FRAME_MAX_BODY + 1, enc);
    CHECK(prv_feed(&d, enc, m, got, &got_len) == -TFA_ERR_FRAME_TOO_LONG, "too long");
    m = prv_ref_frame(body, TFA_FRAME_MAX_BODY, enc);
    CHECK(prv_feed(&d, enc, m, got, &got_len) == TFA_FRAME_READY && got_len == TFA_FRAME_MAX_BODY,
          "max after too long");
    /* Too long made of zeros only: 0x01 code bytes that each add a decoded zero. */
    memset(body, 0, sizeof body);
    m = prv_ref_frame(body, TFA_FRAME_MAX_BODY + 5, enc);
    CHECK(prv_feed(&d, enc, m, got, &got_len) == -TFA_ERR_FRAME_TOO_LONG, "too long zeros");
    /* A tiny decoder buffer. */
    uint8_t small[8];
    tfa_frame_decoder_init(&d, small, sizeof small);
    m = prv_ref_frame(body, 4, enc);
    CHECK(prv_feed(&d, enc, m, got, &got_len) == TFA_FRAME_READY && got_len == 4, "fits small buffer");
    m = prv_ref_frame(body, 5, enc);
    CHECK(prv_feed(&d, enc, m, got, &got_len) == -TFA_ERR_FRAME_TOO_LONG, "above small buffer");
}

static void test_garbage_and_truncation(void)
{
    uint8_t rx[TFA_FRAME_MAX_DECODED], got[TFA_FRAME_MAX_DECODED];
    static uint8_t enc[BIG];
    tfa_frame_decoder_t d;
    tfa_frame_decoder_init(&d, rx, sizeof rx);
    const uint8_t body[] = {0x02, 0x07, 0x00, 0x00, 0xFF, 0x10};
    uint32_t n = prv_ref_frame(body, sizeof body, enc);
    uint32_t got_len = 0;

    /* Idle line: delimiters only, nothing reported. */
    const uint8_t idle[] = {0, 0, 0, 0};
    CHECK(prv_feed(&d, idle, sizeof idle, got, &got_len) == 0, "idle");

    /* Garbage then a frame: the garbage is reported at the frame's leading delimiter, the frame is good. */
    const uint8_t junk[] = {0x13, 0x99, 0xFE, 0x01, 0x05};
    int rc = prv_feed(&d, junk, sizeof junk, got, &got_len);
    CHECK(rc == 0, "junk alone reports nothing yet");
    uint32_t bl = 0;
    rc = tfa_frame_push(&d, enc[0], &bl);
    CHECK(rc == -TFA_ERR_FRAME_DECODE || rc == -TFA_ERR_FRAME_CRC, "junk frame rc %d", rc);
    rc = prv_feed(&d, enc + 1, n - 1, got, &got_len);
    CHECK(rc == TFA_FRAME_READY && got_len == sizeof body && memcmp(got, body, sizeof body) == 0,
          "after junk");

    /* A frame cut anywhere, then the next frame: the cut one is an error, the next one is fine. */
    for (uint32_t cut = 2; cut + 1 < n; cut++) {
        rc = prv_feed(&d, enc, cut, got, &got_len);
        CHECK(rc == 0, "partial reports nothing");
        got_len = 0;
        rc = prv_feed(&d, enc, n, got, &got_len);
        CHECK(rc == TFA_FRAME_READY && got_len == sizeof body, "resync after cut at %u", cut);
        rc = prv_feed(&d, enc + 1, cut - 1, got, &got_len);
        bl = 0;
        rc = tfa_frame_push(&d, 0, &bl);
        CHECK(rc == -TFA_ERR_FRAME_DECODE || rc == -TFA_ERR_FRAME_CRC, "truncated at %u rc %d", cut, rc);
    }

    /* Shorter than the CRC: decode error. */
    const uint8_t three[] = {0x00, 0x04, 0x01, 0x02, 0x03, 0x00};
    CHECK(prv_feed(&d, three, sizeof three, got, &got_len) == -TFA_ERR_FRAME_DECODE, "3-byte frame");
    /* A block that promises more bytes than arrive. */
    const uint8_t shortblk[] = {0x00, 0x09, 0x01, 0x02, 0x03, 0x04, 0x00};
    CHECK(prv_feed(&d, shortblk, sizeof shortblk, got, &got_len) == -TFA_ERR_FRAME_DECODE, "short block");
}

static void test_bit_flips(void)
{
    uint8_t rx[TFA_FRAME_MAX_DECODED], got[TFA_FRAME_MAX_DECODED];
    static uint8_t enc[BIG], bad[BIG];
    uint8_t body[300];
    for (uint32_t i = 0; i < sizeof body; i++) {
        body[i] = (i % 7u == 0u) ? 0 : (uint8_t)(i * 13u);
    }
    uint32_t n = prv_ref_frame(body, sizeof body, enc);
    tfa_frame_decoder_t d;
    tfa_frame_decoder_init(&d, rx, sizeof rx);
    uint32_t accepted_wrong = 0;
    for (uint32_t pos = 1; pos + 1 < n; pos++) {
        for (int bit = 0; bit < 8; bit++) {
            memcpy(bad, enc, n);
            bad[pos] ^= (uint8_t)(1u << bit);
            uint32_t got_len = 0;
            for (uint32_t i = 0; i < n; i++) {
                uint32_t bl = 0;
                int rc = tfa_frame_push(&d, bad[i], &bl);
                if (rc == TFA_FRAME_READY) {
                    memcpy(got, d.buf, bl);
                    got_len = bl;
                    if (got_len != sizeof body || memcmp(got, body, sizeof body) != 0) {
                        accepted_wrong++;
                    }
                }
            }
            /* Whatever the flip did, the decoder is back in sync for the next good frame. */
            got_len = 0;
            int rc = prv_feed(&d, enc, n, got, &got_len);
            CHECK(rc == TFA_FRAME_READY && got_len == sizeof body, "resync after flip %u/%d", pos, bit);
        }
    }
    CHECK(accepted_wrong == 0, "%u corrupted frames accepted", accepted_wrong);
}

int main(void)
{
    test_known_bytes();
    test_roundtrips();
    test_non_canonical_accepted();
    test_limits();
    test_garbage_and_truncation();
    test_bit_flips();
    return test_report("test_frame");
}
