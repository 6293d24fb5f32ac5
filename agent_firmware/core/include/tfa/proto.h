/* Messages between an agent and the runtime, carried in frames (tfa/frame.h); byte layouts in
 * docs/PROTOCOL.md section 3.2. One handler serves every port: it takes a runtime, a received frame
 * body and an output buffer, and knows nothing of UARTs, hosts or boards.
 *
 * Every message is  u8 type || u16 request_id (LE) || body. A request gets exactly one response that
 * echoes its request id: type | 0x80 on success, TFA_MSG_ERROR on failure. Request id 0 is reserved
 * for responses to frames whose id could not be read (frame errors, messages shorter than 3 bytes). */
#ifndef TFA_PROTO_H
#define TFA_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "tfa/frame.h"
#include "tfa/runtime.h"
#include "tfa/telemetry.h"

#define TFA_PROTO_VERSION 1u
#define TFA_MSG_HEADER_SIZE 3u
#define TFA_MSG_RESPONSE 0x80u
/* Largest data in one INSTALL_CHUNK / INFER request: a frame body minus headers. */
#define TFA_PROTO_MAX_CHUNK (TFA_FRAME_MAX_BODY - TFA_MSG_HEADER_SIZE - 4u)
#define TFA_PROTO_MAX_INFER_INPUT (TFA_FRAME_MAX_BODY - TFA_MSG_HEADER_SIZE - 5u)
/* Longest ASCII detail in an ERROR response. */
#define TFA_PROTO_MAX_DETAIL 48u

enum {
    TFA_MSG_HELLO = 0x01,
    TFA_MSG_STATE = 0x02,
    TFA_MSG_INSTALL_BEGIN = 0x10,
    TFA_MSG_INSTALL_CHUNK = 0x11,
    TFA_MSG_INSTALL_END = 0x12,
    TFA_MSG_ACTIVATE = 0x13,
    TFA_MSG_SELFTEST = 0x14,
    TFA_MSG_CONFIRM = 0x15,
    TFA_MSG_REVERT = 0x16,
    TFA_MSG_INSTALL_ABORT = 0x17,
    TFA_MSG_INSTALL_KEY = 0x18, /* 80-byte content key wrap of an encrypted package */
    TFA_MSG_INFER = 0x20,
    TFA_MSG_TELEMETRY = 0x30,
    TFA_MSG_ERROR = 0xFF
};

/* INFER flags: run one inference after writing the input bytes. */
#define TFA_INFER_RUN 0x01u

/* HELLO feature bits. */
#define TFA_FEATURE_INFERENCE 0x01u

/* The inference engine, plugged in by the port once it exists. Without one (NULL), INFER answers
 * ERROR UNSUPPORTED_OP. Both return 0 or -TFA_ERR_x. */
typedef struct tfa_engine_ops {
    void *ctx;
    /* Copy input bytes into the active model's input tensor at offset. */
    int (*write_input)(void *ctx, const tfa_runtime_t *rt, uint32_t offset, const uint8_t *data,
                       uint32_t len);
    /* Run one inference on the active model; copy the first output tensor into out. */
    int (*invoke)(void *ctx, const tfa_runtime_t *rt, uint8_t *out, uint32_t out_cap, uint32_t *out_len,
                  uint32_t *latency_us);
    /* Optional (NULL: none): facts about the invoke that just succeeded, for the runtime's telemetry
     * (tfa/telemetry.h): CPU cycles (measured, e.g. SysTick on a board, or estimated with the flag
     * set), clock, arena bytes and the output tensor's type and quantization. Without it, TELEMETRY
     * still counts inferences but reports no cycles, histogram or confidence. */
    int (*last_run)(void *ctx, const tfa_runtime_t *rt, tfa_infer_run_t *run);
} tfa_engine_ops_t;

/* Counters reported by TELEMETRY; they wrap around and restart at boot. */
typedef struct tfa_proto_counters {
    uint32_t frames_ok;
    uint32_t frame_crc_errors;
    uint32_t frame_decode_errors;
    uint32_t frame_too_long;
    uint32_t requests;
    uint32_t error_responses;
    uint32_t chunk_bytes;
    uint32_t installs_completed;
    uint32_t inferences;
    uint32_t inference_errors;
    uint64_t latency_us_total;
} tfa_proto_counters_t;

struct tfa_proto;
/* INFER's engine half (tfa_proto_infer): request body of len >= 5 bytes with valid flags, response body
 * written to out (room bytes, room >= 4), its length to *out_len. Returns 0 or -TFA_ERR_x. */
typedef int (*tfa_proto_infer_fn)(struct tfa_proto *p, const uint8_t *body, uint32_t len, uint8_t *out,
                                  uint32_t room, uint32_t *out_len);

typedef struct tfa_proto {
    tfa_runtime_t *rt;
    const tfa_engine_ops_t *engine; /* NULL: no inference engine */
    tfa_proto_infer_fn infer;       /* tfa_proto_infer with an engine, NULL without */
    tfa_proto_counters_t counters;
    tfa_telemetry_t telemetry;      /* the active model's inference telemetry */
    tfa_status_t scratch;           /* status buffer, kept here rather than on a small MCU stack */
} tfa_proto_t;

int tfa_proto_infer(tfa_proto_t *p, const uint8_t *body, uint32_t len, uint8_t *out, uint32_t room,
                    uint32_t *out_len);
void tfa_proto_init_with(tfa_proto_t *p, tfa_runtime_t *rt, const tfa_engine_ops_t *engine,
                         tfa_proto_infer_fn infer);

/* Forced inline so that a port passing a constant NULL engine never references tfa_proto_infer, even
 * before link-time optimization: the linker then leaves INFER's engine half and the inference telemetry
 * out of its image (372 B of firmware.elf; plain inline, GCC kept the reference). */
#if defined(__GNUC__)
#define TFA_PROTO_INIT_INLINE static inline __attribute__((always_inline))
#else
#define TFA_PROTO_INIT_INLINE static inline
#endif

TFA_PROTO_INIT_INLINE void tfa_proto_init(tfa_proto_t *p, tfa_runtime_t *rt, const tfa_engine_ops_t *engine)
{
    tfa_proto_init_with(p, rt, engine, engine != NULL ? tfa_proto_infer : NULL);
}

/* Handle one received frame body and write exactly one response message into out
 * (out_cap >= TFA_FRAME_MAX_BODY). Any byte sequence is a valid input: malformed messages get an
 * ERROR response. Returns 0, or -TFA_ERR_BAD_MESSAGE (nothing written) if out_cap is too small. */
int tfa_proto_handle(tfa_proto_t *p, const uint8_t *in, uint32_t in_len, uint8_t *out, uint32_t out_cap,
                     uint32_t *out_len);

/* Write the ERROR response (request id 0) for a frame that failed to decode (err is
 * -TFA_ERR_FRAME_x) and count it. Same out/return rules as tfa_proto_handle. */
int tfa_proto_frame_error(tfa_proto_t *p, int err, uint8_t *out, uint32_t out_cap, uint32_t *out_len);

/* A port's whole receive path: decoder, handler and encoder with their buffers (about 2.9 KiB). */
typedef struct tfa_link {
    tfa_proto_t proto;
    tfa_frame_decoder_t dec;
    uint8_t rx[TFA_FRAME_MAX_DECODED];
    uint8_t reply[TFA_FRAME_MAX_BODY];
} tfa_link_t;

TFA_PROTO_INIT_INLINE void tfa_link_init(tfa_link_t *l, tfa_runtime_t *rt, const tfa_engine_ops_t *engine)
{
    tfa_proto_init(&l->proto, rt, engine);
    tfa_frame_decoder_init(&l->dec, l->rx, sizeof l->rx);
}

/* Feed one received byte. When it ends a frame (good or bad), the encoded response frame is written
 * to tx (tx_cap >= TFA_FRAME_MAX_ENCODED) and *tx_len is its length; otherwise *tx_len = 0.
 * Returns 0 or -TFA_ERR_BAD_MESSAGE if tx_cap is too small. */
int tfa_link_rx(tfa_link_t *l, uint8_t byte, uint8_t *tx, uint32_t tx_cap, uint32_t *tx_len);

#endif
