/* Framing of messages over a byte stream (UART), docs/PROTOCOL.md section 3.1.
 *
 * On the wire a frame is  0x00 || COBS(body || crc32_le(body)) || 0x00 :
 * COBS removes every 0x00 from the encoded bytes so that 0x00 only ever delimits frames, and a
 * receiver that starts in the middle of a frame, or after line noise, resynchronises at the next
 * 0x00. The leading delimiter flushes whatever partial frame the receiver held; empty frames
 * (two delimiters in a row) are ignored. The CRC-32 (tfa/crc32.h, the same as zlib.crc32) covers the
 * body only and is sent little-endian after it. No allocation: the caller owns every buffer. */
#ifndef TFA_FRAME_H
#define TFA_FRAME_H

#include <stdint.h>

/* Largest body (message) a frame carries: a 1 KiB install chunk plus message headers, with room. */
#define TFA_FRAME_MAX_BODY 1088u
#define TFA_FRAME_CRC_SIZE 4u
/* Largest decoded frame (body + CRC): the size of a decoder's buffer. */
#define TFA_FRAME_MAX_DECODED (TFA_FRAME_MAX_BODY + TFA_FRAME_CRC_SIZE)
/* Bytes on the wire for a body of n bytes, at most: COBS adds one code byte per 254 data bytes and
 * one more at the start, plus the two delimiters. */
#define TFA_FRAME_ENCODED_MAX(n) ((n) + TFA_FRAME_CRC_SIZE + ((n) + TFA_FRAME_CRC_SIZE) / 254u + 1u + 2u)
#define TFA_FRAME_MAX_ENCODED TFA_FRAME_ENCODED_MAX(TFA_FRAME_MAX_BODY)

/* Returned by tfa_frame_push() when a frame with a good CRC is complete (the only positive return). */
#define TFA_FRAME_READY 1

/* Encode body (len <= TFA_FRAME_MAX_BODY) into out; *out_len gets the byte count, delimiters
 * included. Returns 0, -TFA_ERR_FRAME_TOO_LONG if len is above the maximum, or
 * -TFA_ERR_BAD_MESSAGE if out_cap < TFA_FRAME_ENCODED_MAX(len). */
int tfa_frame_encode(const uint8_t *body, uint32_t len, uint8_t *out, uint32_t out_cap, uint32_t *out_len);

/* Streaming decoder state: feed it one received byte at a time. */
typedef struct tfa_frame_decoder {
    uint8_t *buf;       /* caller's buffer, decoded bytes of the frame being received */
    uint32_t cap;       /* its size: TFA_FRAME_MAX_DECODED for full-size frames */
    uint32_t len;       /* decoded bytes so far */
    uint8_t code;       /* COBS code byte of the current block */
    uint8_t left;       /* data bytes still expected in the current block */
    uint8_t started;    /* at least one encoded byte since the last delimiter */
    uint8_t overflow;   /* frame longer than cap: skipping to the next delimiter */
} tfa_frame_decoder_t;

/* buf must hold at least TFA_FRAME_CRC_SIZE bytes (cap >= 4). */
void tfa_frame_decoder_init(tfa_frame_decoder_t *dec, uint8_t *buf, uint32_t cap);

/* Feed one byte. Returns
 *   0                       frame not complete yet (or an empty frame was skipped),
 *   TFA_FRAME_READY         a frame ended with a good CRC: its body is dec->buf[0 .. *body_len),
 *                           valid until the next call,
 *   -TFA_ERR_FRAME_CRC      a frame ended but its CRC does not match,
 *   -TFA_ERR_FRAME_DECODE   a frame ended in the middle of a COBS block, or is shorter than its CRC,
 *   -TFA_ERR_FRAME_TOO_LONG a frame ended that did not fit in the buffer.
 * After any non-zero return the decoder is ready for the next frame. *body_len is set to 0 unless
 * the frame is ready. */
int tfa_frame_push(tfa_frame_decoder_t *dec, uint8_t byte, uint32_t *body_len);

#endif
