/* COBS framing with a CRC-32 trailer, see tfa/frame.h and docs/PROTOCOL.md section 3.1. */
#include "tfa/frame.h"

#include "tfa/crc32.h"
#include "tfa/errors.h"

/* A COBS block holds at most 254 data bytes; its code byte is data bytes + 1. */
#define PRV_COBS_MAX_CODE 0xFFu

/* Byte i of the virtual sequence body || crc32_le(body), so that the encoder needs no copy. */
static uint8_t prv_byte_at(const uint8_t *body, uint32_t len, const uint8_t crc_le[4], uint32_t i)
{
    return i < len ? body[i] : crc_le[i - len];
}

int tfa_frame_encode(const uint8_t *body, uint32_t len, uint8_t *out, uint32_t out_cap, uint32_t *out_len)
{
    *out_len = 0;
    if (len > TFA_FRAME_MAX_BODY) {
        return -TFA_ERR_FRAME_TOO_LONG;
    }
    if (out_cap < TFA_FRAME_ENCODED_MAX(len)) {
        return -TFA_ERR_BAD_MESSAGE;
    }
    const uint32_t crc = tfa_crc32(0, body, len);
    const uint8_t crc_le[4] = {(uint8_t)crc, (uint8_t)(crc >> 8), (uint8_t)(crc >> 16), (uint8_t)(crc >> 24)};
    const uint32_t total = len + TFA_FRAME_CRC_SIZE;

    uint32_t o = 0;
    out[o++] = 0x00;
    uint32_t code_pos = o++; /* the code byte is filled in when its block closes */
    uint8_t code = 1;
    for (uint32_t i = 0; i < total; i++) {
        const uint8_t b = prv_byte_at(body, len, crc_le, i);
        if (b == 0x00) {
            out[code_pos] = code;
            code_pos = o++;
            code = 1;
            continue;
        }
        out[o++] = b;
        code++;
        if (code == PRV_COBS_MAX_CODE) {
            /* Full block: it implies no zero, and the next block starts right away. */
            out[code_pos] = code;
            code_pos = o++;
            code = 1;
        }
    }
    out[code_pos] = code;
    out[o++] = 0x00;
    *out_len = o;
    return 0;
}

void tfa_frame_decoder_init(tfa_frame_decoder_t *dec, uint8_t *buf, uint32_t cap)
{
    dec->buf = buf;
    dec->cap = cap;
    dec->len = 0;
    dec->code = 0;
    dec->left = 0;
    dec->started = 0;
    dec->overflow = 0;
}

static void prv_reset(tfa_frame_decoder_t *dec)
{
    dec->len = 0;
    dec->code = 0;
    dec->left = 0;
    dec->started = 0;
    dec->overflow = 0;
}

static void prv_append(tfa_frame_decoder_t *dec, uint8_t b)
{
    if (dec->len >= dec->cap) {
        dec->overflow = 1;
        return;
    }
    dec->buf[dec->len++] = b;
}

/* The delimiter arrived: judge the frame received since the previous one. */
static int prv_finish(tfa_frame_decoder_t *dec, uint32_t *body_len)
{
    int rc;
    if (dec->overflow) {
        rc = -TFA_ERR_FRAME_TOO_LONG;
    } else if (dec->left != 0 || dec->len < TFA_FRAME_CRC_SIZE) {
        rc = -TFA_ERR_FRAME_DECODE;
    } else {
        const uint32_t n = dec->len - TFA_FRAME_CRC_SIZE;
        const uint8_t *c = dec->buf + n;
        const uint32_t sent = (uint32_t)c[0] | ((uint32_t)c[1] << 8) | ((uint32_t)c[2] << 16) |
                              ((uint32_t)c[3] << 24);
        if (tfa_crc32(0, dec->buf, n) != sent) {
            rc = -TFA_ERR_FRAME_CRC;
        } else {
            *body_len = n;
            rc = TFA_FRAME_READY;
        }
    }
    prv_reset(dec);
    return rc;
}

int tfa_frame_push(tfa_frame_decoder_t *dec, uint8_t byte, uint32_t *body_len)
{
    *body_len = 0;
    if (byte == 0x00) {
        if (!dec->started) {
            return 0; /* empty frame: a leading delimiter or idle line */
        }
        return prv_finish(dec, body_len);
    }
    if (dec->overflow) {
        return 0; /* skip to the delimiter, then report */
    }
    if (dec->left == 0) {
        /* A code byte. The block before it, unless full or the first, stood for a zero. */
        if (dec->started && dec->code != PRV_COBS_MAX_CODE) {
            prv_append(dec, 0x00);
        }
        dec->started = 1;
        dec->code = byte;
        dec->left = (uint8_t)(byte - 1u);
        return 0;
    }
    prv_append(dec, byte);
    dec->left--;
    return 0;
}
