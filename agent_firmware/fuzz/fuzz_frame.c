/* libFuzzer harness: the streaming frame decoder (COBS + CRC32) on arbitrary received bytes. Every
 * frame it accepts is re-encoded and decoded again, which must give back the same body. */
#include "fuzz_common.h"
#include "tfa/errors.h"
#include "tfa/frame.h"

static void prv_roundtrip(const uint8_t *body, uint32_t len)
{
    static uint8_t enc[TFA_FRAME_MAX_ENCODED];
    static uint8_t buf[TFA_FRAME_MAX_DECODED];
    uint32_t enc_len = 0;
    if (tfa_frame_encode(body, len, enc, sizeof enc, &enc_len) != 0) {
        abort();
    }
    tfa_frame_decoder_t dec;
    tfa_frame_decoder_init(&dec, buf, sizeof buf);
    int got = 0;
    for (uint32_t i = 0; i < enc_len; i++) {
        uint32_t n = 0;
        int rc = tfa_frame_push(&dec, enc[i], &n);
        if (rc == TFA_FRAME_READY) {
            if (got || n != len || memcmp(buf, body, len) != 0) {
                abort();
            }
            got = 1;
        } else if (rc != 0) {
            abort();
        }
    }
    if (!got) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t buf[TFA_FRAME_MAX_DECODED];
    static uint8_t body[TFA_FRAME_MAX_DECODED];
    if (size < 1) {
        return 0;
    }
    /* first byte picks a small buffer sometimes, to reach the overflow path with short inputs */
    uint32_t cap = (data[0] & 1u) ? 4u + data[0] : (uint32_t)sizeof buf;
    tfa_frame_decoder_t dec;
    tfa_frame_decoder_init(&dec, buf, cap);
    for (size_t i = 1; i < size; i++) {
        uint32_t n = 7;
        int rc = tfa_frame_push(&dec, data[i], &n);
        if (rc == TFA_FRAME_READY) {
            if (n > cap || n > TFA_FRAME_MAX_BODY + 4u) {
                abort();
            }
            memcpy(body, buf, n);
            if (n <= TFA_FRAME_MAX_BODY) {
                prv_roundtrip(body, n);
            }
        } else if (rc != 0 && rc != -TFA_ERR_FRAME_CRC && rc != -TFA_ERR_FRAME_DECODE &&
                   rc != -TFA_ERR_FRAME_TOO_LONG) {
            abort();
        } else if (n != 0) {
            abort();
        }
    }
    return 0;
}
