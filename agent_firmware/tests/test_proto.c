/* The message handler on every message type, driven like an agent drives it: a real runtime on a RAM
 * flash, the golden packages of tests/vectors, malformed and unknown messages, a fake inference engine
 * for the INFER plumbing, random messages under ASan/UBSan, the whole receive path (tfa_link), and the
 * host library's device (ports/host/host_device.c) with its flow control, engine and power cuts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flash_host.h"
#include "host_device.h"
#include "test_util.h"
#include "tfa/errors.h"
#include "tfa/frame.h"
#include "tfa/proto.h"
#include "tfa/runtime.h"
#include "tv_support.h"

#define HW_CLASS 7u
#define SECTOR 4096u
#define SLOT 16384u
#define MAX_PKG 32768u

/* ------------------------------------------------------------------ fixtures */

typedef struct {
    uint8_t data[MAX_PKG];
    uint32_t len;
} pkg_t;

/* A golden package copied into out; a missing or oversized one is a failure and leaves out->len 0. */
static void prv_load(const char *name, pkg_t *out)
{
    uint32_t len = 0;
    uint8_t *bytes = tv_read_vector(name, &len);
    int ok = bytes != NULL && len <= sizeof out->data;
    CHECK(ok, "cannot load %s (%u bytes) from %s", name, len, tv_vector_dir());
    out->len = ok ? len : 0u;
    if (ok) {
        memcpy(out->data, bytes, len);
    }
    free(bytes);
}

static tfa_flash_host_t g_fh;
static tfa_trusted_key_t g_key;
static tfa_device_config_t g_cfg;
static tfa_runtime_t g_rt;
static tfa_proto_t g_proto;
static uint8_t g_out[TFA_FRAME_MAX_BODY];
static uint32_t g_out_len;
static uint16_t g_next_id = 1;

static void prv_device_new(void)
{
    tfa_flash_host_free(&g_fh);
    CHECK(tfa_flash_host_init(&g_fh, NULL, TFA_FLASH_SIZE_FOR(SECTOR, SLOT), SECTOR) == 0, "flash init");
    memset(&g_cfg, 0, sizeof g_cfg);
    g_cfg.hardware_class = HW_CLASS;
    g_cfg.runtime_version = TFA_RUNTIME_VERSION;
    g_cfg.ram_budget = 16384;
    g_cfg.slot_size = SLOT;
    g_cfg.keys = &g_key;
    g_cfg.key_count = 1;
    memset(&g_rt, 0, sizeof g_rt);
    CHECK(tfa_runtime_boot(&g_rt, &g_fh.flash, &g_cfg) == 0, "boot");
    tfa_proto_init(&g_proto, &g_rt, NULL);
    g_next_id = 1;
}

/* Sends one request; returns the response type and leaves the body in g_out + 3, g_out_len - 3. */
static uint8_t prv_call(uint8_t type, const uint8_t *body, uint32_t len)
{
    static uint8_t in[TFA_FRAME_MAX_BODY + 16];
    const uint16_t id = g_next_id++;
    in[0] = type;
    in[1] = (uint8_t)id;
    in[2] = (uint8_t)(id >> 8);
    if (len > 0) {
        memcpy(in + 3, body, len);
    }
    int rc = tfa_proto_handle(&g_proto, in, len + 3, g_out, sizeof g_out, &g_out_len);
    CHECK(rc == 0, "handle rc %d", rc);
    CHECK(g_out_len >= 3 && g_out_len <= TFA_FRAME_MAX_BODY, "response length %u", g_out_len);
    CHECK(g_out[1] == (uint8_t)id && g_out[2] == (uint8_t)(id >> 8), "request id not echoed");
    return g_out[0];
}

static uint32_t prv_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static void prv_expect_ok(uint8_t type, const uint8_t *body, uint32_t len, uint32_t body_len,
                          const char *what)
{
    uint8_t t = prv_call(type, body, len);
    CHECK(t == (type | TFA_MSG_RESPONSE), "%s: type 0x%02x (error %s)", what, t,
          t == TFA_MSG_ERROR ? tfa_err_name(g_out[3]) : "-");
    CHECK(g_out_len == 3u + body_len, "%s: body %u, expected %u", what, g_out_len - 3u, body_len);
}

static void prv_expect_err(uint8_t type, const uint8_t *body, uint32_t len, int code, const char *what)
{
    uint8_t t = prv_call(type, body, len);
    CHECK(t == TFA_MSG_ERROR, "%s: type 0x%02x, expected ERROR", what, t);
    if (t == TFA_MSG_ERROR) {
        CHECK(g_out[3] == code, "%s: error %s, expected %s", what, tfa_err_name(g_out[3]),
              tfa_err_name(code));
        CHECK(g_out[4] == type, "%s: request type 0x%02x in error", what, g_out[4]);
        const char *name = tfa_err_name(code);
        CHECK(g_out_len == 5u + strlen(name) && memcmp(g_out + 5, name, strlen(name)) == 0,
              "%s: detail", what);
    }
}

/* STATE body fields. */
#define ST_PHASE 0
#define ST_ACTIVE 1
#define ST_TARGET 2
#define ST_PASSED 5
#define ST_FLOOR 8
#define ST_OFFSET 12
#define ST_SIZE 16
#define ST_SLOTS 28
#define SLOT_BYTES 87
#define STATE_BYTES (ST_SLOTS + 2 * SLOT_BYTES)

static const uint8_t *prv_state(void)
{
    prv_expect_ok(TFA_MSG_STATE, NULL, 0, STATE_BYTES, "STATE");
    return g_out + 3;
}

/* Begin, chunks of chunk bytes, end; returns the first error code (0 if none). */
static int prv_install(const pkg_t *pkg, uint32_t chunk)
{
    const uint32_t manifest_len = pkg->len < TFA_MANIFEST_SIZE ? pkg->len : TFA_MANIFEST_SIZE;
    uint8_t t = prv_call(TFA_MSG_INSTALL_BEGIN, pkg->data, manifest_len);
    if (t == TFA_MSG_ERROR) {
        return g_out[3];
    }
    CHECK(g_out_len == 11 && prv_u32(g_out + 3) == 0, "begin progress");
    static uint8_t body[TFA_FRAME_MAX_BODY];
    for (uint32_t off = TFA_MANIFEST_SIZE; off < pkg->len; off += chunk) {
        uint32_t n = pkg->len - off < chunk ? pkg->len - off : chunk;
        const uint32_t payload_off = off - TFA_MANIFEST_SIZE;
        body[0] = (uint8_t)payload_off;
        body[1] = (uint8_t)(payload_off >> 8);
        body[2] = (uint8_t)(payload_off >> 16);
        body[3] = (uint8_t)(payload_off >> 24);
        memcpy(body + 4, pkg->data + off, n);
        t = prv_call(TFA_MSG_INSTALL_CHUNK, body, n + 4);
        if (t == TFA_MSG_ERROR) {
            return g_out[3];
        }
        CHECK(g_out_len == 11 && prv_u32(g_out + 3) == payload_off + n, "chunk progress %u",
              prv_u32(g_out + 3));
    }
    t = prv_call(TFA_MSG_INSTALL_END, NULL, 0);
    if (t == TFA_MSG_ERROR) {
        return g_out[3];
    }
    CHECK(g_out_len == 5 && g_out[3] == TFA_PHASE_DOWNLOADED, "end phase");
    return 0;
}

static void prv_activate_confirm(void)
{
    prv_expect_ok(TFA_MSG_ACTIVATE, NULL, 0, 2, "ACTIVATE");
    CHECK(g_out[3] == TFA_PHASE_TRIAL, "phase after activate %u", g_out[3]);
    prv_expect_err(TFA_MSG_CONFIRM, NULL, 0, TFA_ERR_BAD_STATE, "CONFIRM before SELFTEST");
    prv_expect_ok(TFA_MSG_SELFTEST, NULL, 0, 2, "SELFTEST");
    prv_expect_ok(TFA_MSG_CONFIRM, NULL, 0, 2, "CONFIRM");
    CHECK(g_out[3] == TFA_PHASE_IDLE, "phase after confirm %u", g_out[3]);
}

/* ------------------------------------------------------------------ tests */

static void test_hello_and_state(void)
{
    prv_device_new();
    prv_expect_ok(TFA_MSG_HELLO, NULL, 0, 20, "HELLO");
    const uint8_t *b = g_out + 3;
    CHECK(b[0] == TFA_PROTO_VERSION && b[1] == 0, "protocol version / features");
    CHECK((b[2] | (b[3] << 8)) == TFA_FRAME_MAX_BODY, "max body");
    CHECK(prv_u32(b + 4) == TFA_RUNTIME_VERSION && prv_u32(b + 8) == HW_CLASS, "versions");
    CHECK(prv_u32(b + 12) == 16384 && prv_u32(b + 16) == SLOT, "ram / slot");
    const uint8_t *st = prv_state();
    CHECK(st[ST_PHASE] == TFA_PHASE_IDLE && st[ST_ACTIVE] == 0xFF && st[ST_TARGET] == 0xFF, "fresh state");
    CHECK(prv_u32(st + 20) == TFA_RUNTIME_VERSION && prv_u32(st + 24) == HW_CLASS, "state versions");
    CHECK(st[ST_SLOTS] == 0 && st[ST_SLOTS + SLOT_BYTES] == 0, "no valid slot");
}

static void test_malformed(void)
{
    prv_device_new();
    uint8_t in[8] = {TFA_MSG_HELLO, 0x34, 0x12, 0};
    /* Shorter than the header: ERROR with request id 0. */
    for (uint32_t n = 0; n < 3; n++) {
        CHECK(tfa_proto_handle(&g_proto, in, n, g_out, sizeof g_out, &g_out_len) == 0, "short handle");
        CHECK(g_out_len >= 5 && g_out[0] == TFA_MSG_ERROR && g_out[1] == 0 && g_out[2] == 0 &&
                  g_out[3] == TFA_ERR_BAD_MESSAGE,
              "%u-byte message", n);
    }
    int rc = tfa_proto_handle(&g_proto, in, 3, g_out, TFA_FRAME_MAX_BODY - 1, &g_out_len);
    CHECK(rc == -TFA_ERR_BAD_MESSAGE && g_out_len == 0, "small output buffer refused");

    const uint8_t one = 0;
    const uint8_t empties[] = {TFA_MSG_HELLO,    TFA_MSG_STATE,   TFA_MSG_INSTALL_END, TFA_MSG_INSTALL_ABORT,
                               TFA_MSG_ACTIVATE, TFA_MSG_SELFTEST, TFA_MSG_CONFIRM,     TFA_MSG_REVERT,
                               TFA_MSG_TELEMETRY};
    for (size_t i = 0; i < sizeof empties; i++) {
        prv_expect_err(empties[i], &one, 1, TFA_ERR_BAD_MESSAGE, "empty-body request with a body");
    }
    const uint8_t four[4] = {0, 0, 0, 0};
    prv_expect_err(TFA_MSG_INSTALL_CHUNK, NULL, 0, TFA_ERR_BAD_MESSAGE, "chunk without offset");
    prv_expect_err(TFA_MSG_INSTALL_CHUNK, four, 4, TFA_ERR_BAD_MESSAGE, "chunk without data");
    prv_expect_err(TFA_MSG_INFER, four, 4, TFA_ERR_BAD_MESSAGE, "infer without flags");
    const uint8_t bad_flags[6] = {0, 0, 0, 0, 0x02, 7};
    prv_expect_err(TFA_MSG_INFER, bad_flags, 6, TFA_ERR_BAD_MESSAGE, "infer unknown flag");
    const uint8_t run[6] = {0, 0, 0, 0, TFA_INFER_RUN, 7};
    prv_expect_err(TFA_MSG_INFER, run, 6, TFA_ERR_UNSUPPORTED_OP, "infer without an engine");
    prv_expect_err(0x00, NULL, 0, TFA_ERR_UNKNOWN_MESSAGE, "type 0");
    prv_expect_err(0x55, four, 4, TFA_ERR_UNKNOWN_MESSAGE, "type 0x55");
    prv_expect_err(TFA_MSG_HELLO | TFA_MSG_RESPONSE, NULL, 0, TFA_ERR_UNKNOWN_MESSAGE, "a response type");
    prv_expect_err(TFA_MSG_ERROR, NULL, 0, TFA_ERR_UNKNOWN_MESSAGE, "ERROR as a request");
    /* Install messages out of order are the runtime's BAD_STATE. */
    prv_expect_err(TFA_MSG_INSTALL_CHUNK, bad_flags, 6, TFA_ERR_BAD_STATE, "chunk before begin");
    prv_expect_err(TFA_MSG_ACTIVATE, NULL, 0, TFA_ERR_BAD_STATE, "activate with nothing downloaded");
    prv_expect_err(TFA_MSG_REVERT, NULL, 0, TFA_ERR_NO_PREVIOUS, "revert with no model");
    prv_expect_err(TFA_MSG_INSTALL_BEGIN, four, 4, TFA_ERR_TRUNCATED, "4-byte manifest");
}

static void test_install_lifecycle(void)
{
    static pkg_t active, good, replayed;
    prv_load("good_active.tfpkg", &active);
    prv_load("good.tfpkg", &good);
    prv_load("policy_replayed_equal.tfpkg", &replayed);
    prv_device_new();

    CHECK(prv_install(&active, TFA_PROTO_MAX_CHUNK) == 0, "install good_active");
    const uint8_t *st = prv_state();
    CHECK(st[ST_PHASE] == TFA_PHASE_DOWNLOADED, "downloaded");
    prv_activate_confirm();
    st = prv_state();
    const uint8_t active_slot = st[ST_ACTIVE];
    CHECK(active_slot < 2, "active slot %u", active_slot);
    const uint8_t *slot = st + ST_SLOTS + (active_slot < 2 ? active_slot : 0) * SLOT_BYTES;
    CHECK(slot[0] == 1 && prv_u32(slot + 39) == 5 && prv_u32(slot + 43) == 3, "active slot fields");
    CHECK(strcmp((const char *)slot + 1, "vector-kws") == 0, "model name");
    CHECK(memcmp(slot + 55, active.data + 108, 32) == 0, "model sha256");
    CHECK(prv_u32(st + ST_FLOOR) == 3, "floor 3");

    /* A replayed package is refused at begin and changes nothing. */
    CHECK(prv_install(&replayed, 512) == TFA_ERR_REPLAYED, "replayed");
    st = prv_state();
    CHECK(st[ST_PHASE] == TFA_PHASE_IDLE && st[ST_ACTIVE] == active_slot, "state after refusal");

    /* Wrong offset, abort, then a full install of good and a revert from trial. */
    CHECK(prv_call(TFA_MSG_INSTALL_BEGIN, good.data, TFA_MANIFEST_SIZE) == (TFA_MSG_INSTALL_BEGIN | 0x80),
          "begin");
    st = prv_state();
    CHECK(st[ST_PHASE] == TFA_PHASE_DOWNLOADING && st[ST_TARGET] == 1 - active_slot, "downloading");
    CHECK(st[ST_SLOTS + (1 - active_slot) * SLOT_BYTES] == 0 &&
              prv_u32(st + ST_SLOTS + (1 - active_slot) * SLOT_BYTES + 39) == 6,
          "target slot shows the manifest being downloaded, not valid");
    CHECK(prv_u32(st + ST_SIZE) == good.len - TFA_MANIFEST_SIZE, "download size");
    uint8_t body[20] = {8, 0, 0, 0, 1, 2, 3};
    prv_expect_err(TFA_MSG_INSTALL_CHUNK, body, 7, TFA_ERR_BAD_OFFSET, "chunk at a wrong offset");
    prv_expect_ok(TFA_MSG_INSTALL_ABORT, NULL, 0, 2, "ABORT");
    CHECK(g_out[3] == TFA_PHASE_IDLE, "idle after abort");
    CHECK(prv_install(&good, 300) == 0, "install good");
    prv_expect_ok(TFA_MSG_ACTIVATE, NULL, 0, 2, "ACTIVATE good");
    CHECK(g_out[4] == 1 - active_slot, "new slot active");
    prv_expect_ok(TFA_MSG_REVERT, NULL, 0, 2, "REVERT");
    CHECK(g_out[3] == TFA_PHASE_IDLE && g_out[4] == active_slot, "back to the old slot");

    /* Telemetry counted what happened. */
    prv_expect_ok(TFA_MSG_TELEMETRY, NULL, 0, 188, "TELEMETRY");
    const uint8_t *t = g_out + 3;
    CHECK(prv_u32(t + 16) == g_next_id - 1u, "requests %u vs %u", prv_u32(t + 16), g_next_id - 1u);
    CHECK(prv_u32(t + 24) == (active.len - TFA_MANIFEST_SIZE) + (good.len - TFA_MANIFEST_SIZE),
          "chunk bytes");
    CHECK(prv_u32(t + 28) == 2, "installs completed");
    CHECK(prv_u32(t + 20) == 3, "error responses %u", prv_u32(t + 20));
}

/* ------------------------------------------------------------------ fake engine */

typedef struct {
    uint8_t input[64];
    uint32_t writes;
    int fail_write;
    int overstep;
} fake_engine_t;

static int prv_fake_write(void *ctx, const tfa_runtime_t *rt, uint32_t offset, const uint8_t *data,
                          uint32_t len)
{
    fake_engine_t *f = ctx;
    (void)rt;
    if (f->fail_write || offset > sizeof f->input || len > sizeof f->input - offset) {
        return -TFA_ERR_BAD_OFFSET;
    }
    memcpy(f->input + offset, data, len);
    f->writes++;
    return 0;
}

static int prv_fake_invoke(void *ctx, const tfa_runtime_t *rt, uint8_t *out, uint32_t out_cap,
                           uint32_t *out_len, uint32_t *latency_us)
{
    fake_engine_t *f = ctx;
    (void)rt;
    if (f->overstep) {
        *out_len = out_cap + 1;
        return 0;
    }
    /* Output: the sum of the first 8 input bytes, then 0xAB. */
    uint8_t sum = 0;
    for (int i = 0; i < 8; i++) {
        sum = (uint8_t)(sum + f->input[i]);
    }
    out[0] = sum;
    out[1] = 0xAB;
    *out_len = 2;
    *latency_us = 1500;
    return 0;
}

static void test_infer_plumbing(void)
{
    prv_device_new();
    static fake_engine_t fake;
    memset(&fake, 0, sizeof fake);
    const tfa_engine_ops_t ops = {&fake, prv_fake_write, prv_fake_invoke, NULL};
    tfa_proto_init(&g_proto, &g_rt, &ops);
    prv_expect_ok(TFA_MSG_HELLO, NULL, 0, 20, "HELLO with engine");
    CHECK(g_out[4] == TFA_FEATURE_INFERENCE, "inference feature bit");
    const uint8_t part1[9] = {0, 0, 0, 0, 0, 1, 2, 3, 4};
    prv_expect_ok(TFA_MSG_INFER, part1, 9, 0, "input slice, no run");
    const uint8_t part2[9] = {4, 0, 0, 0, TFA_INFER_RUN, 5, 6, 7, 8};
    prv_expect_ok(TFA_MSG_INFER, part2, 9, 6, "input slice and run");
    CHECK(prv_u32(g_out + 3) == 1500 && g_out[7] == 36 && g_out[8] == 0xAB, "inference output");
    const uint8_t run_only[5] = {0, 0, 0, 0, TFA_INFER_RUN};
    prv_expect_ok(TFA_MSG_INFER, run_only, 5, 6, "run only");
    CHECK(fake.writes == 2, "no write for an empty slice");
    const uint8_t far[6] = {0xFF, 0, 0, 0, 0, 1};
    prv_expect_err(TFA_MSG_INFER, far, 6, TFA_ERR_BAD_OFFSET, "engine error is reported");
    fake.overstep = 1;
    prv_expect_err(TFA_MSG_INFER, run_only, 5, TFA_ERR_BAD_MESSAGE, "engine overstepping the buffer");
    prv_expect_ok(TFA_MSG_TELEMETRY, NULL, 0, 188, "TELEMETRY");
    CHECK(prv_u32(g_out + 3 + 32) == 2 && prv_u32(g_out + 3 + 36) == 1, "inference counters");
    CHECK(prv_u32(g_out + 3 + 40) == 3000 && prv_u32(g_out + 3 + 44) == 0, "latency total");
    /* Without last_run: inferences counted, nothing classified, no cycles, no model tracked. */
    CHECK(g_out[3 + 48] == 0 && g_out[3 + 49] == 16, "telemetry flags and class count");
    CHECK(prv_u32(g_out + 3 + 84) == 2 && prv_u32(g_out + 3 + 88) == 1, "model inferences and errors");
    CHECK(prv_u32(g_out + 3 + 92) == 0 && prv_u32(g_out + 3 + 104) == 0, "no classification, no cycles");
}

/* ------------------------------------------------------------------ random messages */

static uint32_t g_rng = 0xC0FFEEu;

static uint32_t prv_rand(void)
{
    return test_xorshift32(&g_rng);
}

static void test_random_messages(void)
{
    static pkg_t good;
    prv_load("good_active.tfpkg", &good);
    prv_device_new();
    static uint8_t in[TFA_FRAME_MAX_BODY];
    const uint8_t types[] = {0x01, 0x02, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15,
                             0x16, 0x17, 0x20, 0x30, 0x00, 0x7F, 0x81, 0xFF};
    for (int i = 0; i < 20000; i++) {
        uint32_t len = prv_rand() % 16u == 0 ? prv_rand() % (TFA_FRAME_MAX_BODY + 1u) : prv_rand() % 12u;
        for (uint32_t k = 0; k < len; k++) {
            in[k] = (uint8_t)prv_rand();
        }
        if (len > 0 && prv_rand() % 2u == 0) {
            in[0] = types[prv_rand() % sizeof types];
        }
        if (len >= 3u + TFA_MANIFEST_SIZE && in[0] == TFA_MSG_INSTALL_BEGIN && prv_rand() % 2u == 0) {
            memcpy(in + 3, good.data, TFA_MANIFEST_SIZE); /* a real manifest now and then */
        }
        int rc = tfa_proto_handle(&g_proto, in, len, g_out, sizeof g_out, &g_out_len);
        CHECK(rc == 0 && g_out_len >= 3 && g_out_len <= TFA_FRAME_MAX_BODY, "random message %d", i);
        CHECK(g_out[0] == TFA_MSG_ERROR || (len >= 3 && g_out[0] == (in[0] | TFA_MSG_RESPONSE)),
              "response type");
        if (len >= 3) {
            CHECK(g_out[1] == in[1] && g_out[2] == in[2], "id echoed");
        }
    }
    /* Still answers. */
    prv_expect_ok(TFA_MSG_HELLO, NULL, 0, 20, "HELLO after random messages");
}

/* ------------------------------------------------------------------ the receive path */

static void test_link(void)
{
    prv_device_new();
    static tfa_link_t link;
    static uint8_t tx[TFA_FRAME_MAX_ENCODED], enc[TFA_FRAME_MAX_ENCODED], rx[TFA_FRAME_MAX_DECODED];
    tfa_link_init(&link, &g_rt, NULL);
    const uint8_t hello[3] = {TFA_MSG_HELLO, 0x07, 0x00};
    uint32_t n = 0;
    CHECK(tfa_frame_encode(hello, 3, enc, sizeof enc, &n) == 0, "encode");
    /* Garbage first: it ends at the frame's leading delimiter and is answered with an ERROR, id 0. */
    const uint8_t junk[] = {0x55, 0x02, 0x99};
    int responses = 0, frame_errors = 0, hellos = 0;
    tfa_frame_decoder_t dec;
    tfa_frame_decoder_init(&dec, rx, sizeof rx);
    for (int pass = 0; pass < 2; pass++) {
        const uint8_t *src = pass == 0 ? junk : enc;
        uint32_t src_len = pass == 0 ? (uint32_t)sizeof junk : n;
        for (uint32_t i = 0; i < src_len; i++) {
            uint32_t tx_len = 0;
            CHECK(tfa_link_rx(&link, src[i], tx, sizeof tx, &tx_len) == 0, "link rx");
            for (uint32_t k = 0; k < tx_len; k++) {
                uint32_t bl = 0;
                int rc = tfa_frame_push(&dec, tx[k], &bl);
                CHECK(rc == 0 || rc == TFA_FRAME_READY, "device sent a bad frame");
                if (rc == TFA_FRAME_READY) {
                    responses++;
                    if (dec.buf[0] == TFA_MSG_ERROR && dec.buf[1] == 0 && dec.buf[2] == 0 &&
                        (dec.buf[3] == TFA_ERR_FRAME_DECODE || dec.buf[3] == TFA_ERR_FRAME_CRC)) {
                        frame_errors++;
                    }
                    if (dec.buf[0] == (TFA_MSG_HELLO | 0x80) && dec.buf[1] == 0x07 && bl == 23) {
                        hellos++;
                    }
                }
            }
        }
    }
    CHECK(responses == 2 && frame_errors == 1 && hellos == 1, "responses %d errors %d hellos %d", responses,
          frame_errors, hellos);
    CHECK(link.proto.counters.frames_ok == 1 && link.proto.counters.frame_decode_errors +
                                                        link.proto.counters.frame_crc_errors == 1,
          "link counters");
    uint32_t tx_len = 0;
    CHECK(tfa_link_rx(&link, 0, tx, TFA_FRAME_MAX_ENCODED - 1, &tx_len) == -TFA_ERR_BAD_MESSAGE, "small tx");
}


/* ------------------------------------------------------------------ the host device (ports/host) */

/* Sends one framed request through the host device's UART; returns the response body length (0 if none)
 * and leaves the body in g_out. Drains the output as the device asks (flow control). */
static uint32_t prv_host_call(tfa_host_device_t *dev, const uint8_t *msg, uint32_t len)
{
    static uint8_t enc[TFA_FRAME_MAX_ENCODED], rx[TFA_FRAME_MAX_DECODED], out[4096];
    uint32_t n = 0;
    CHECK(tfa_frame_encode(msg, len, enc, sizeof enc, &n) == 0, "encode");
    tfa_frame_decoder_t dec;
    tfa_frame_decoder_init(&dec, rx, sizeof rx);
    uint32_t body_len = 0;
    uint32_t sent = 0;
    while (sent < n) {
        uint32_t accepted = 0;
        CHECK(tfa_host_uart_write(dev, enc + sent, n - sent, &accepted) == 0, "uart write");
        sent += accepted;
        uint32_t got = tfa_host_uart_read(dev, out, sizeof out);
        for (uint32_t i = 0; i < got; i++) {
            uint32_t bl = 0;
            if (tfa_frame_push(&dec, out[i], &bl) == TFA_FRAME_READY) {
                memcpy(g_out, dec.buf, bl);
                body_len = bl;
            }
        }
    }
    return body_len;
}

static void test_host_device(void)
{
    static pkg_t pkg;
    prv_load("good_selftest.tfpkg", &pkg);
    uint8_t keyrec[TFA_HOST_KEY_RECORD];
    memcpy(keyrec, g_key.key_id, 8);
    memcpy(keyrec + 8, g_key.public_key, 32);
    tfa_host_config_t cfg = {HW_CLASS, TFA_RUNTIME_VERSION, 16384, SLOT, SECTOR, 1, keyrec, 1, 0, 0, 0, NULL, 0};
    tfa_host_device_t *dev = NULL;
    tfa_host_config_t bad = cfg;
    bad.sector_size = 1000;
    CHECK(tfa_host_create(&bad, &dev) == -TFA_ERR_FIELD_RANGE && dev == NULL, "bad geometry refused");
    CHECK(tfa_host_create(&cfg, &dev) == 0 && dev != NULL, "create");
    if (dev == NULL) {
        return;
    }
    CHECK(!tfa_host_is_on(dev), "off until boot");
    CHECK(tfa_host_boot(dev) == 0 && tfa_host_is_on(dev), "boot");
    const uint32_t flash_size = TFA_FLASH_SIZE_FOR(SECTOR, SLOT);
    CHECK(tfa_host_flash_size(dev) == flash_size, "flash size");
    /* the bound includes the delta decoder's workspace, about 6 KiB */
    CHECK(tfa_host_memory_bytes(dev) > flash_size && tfa_host_memory_bytes(dev) < flash_size + 16384u,
          "memory %u", tfa_host_memory_bytes(dev));

    /* 300 HELLOs in one write: flow control stops the device until the host reads. */
    static uint8_t burst[300 * 16];
    uint32_t burst_len = 0;
    for (uint16_t i = 1; i <= 300; i++) {
        const uint8_t hello[3] = {TFA_MSG_HELLO, (uint8_t)i, (uint8_t)(i >> 8)};
        uint32_t n = 0;
        CHECK(tfa_frame_encode(hello, 3, burst + burst_len, sizeof burst - burst_len, &n) == 0, "encode");
        burst_len += n;
    }
    static uint8_t out[8192], rx[TFA_FRAME_MAX_DECODED];
    tfa_frame_decoder_t dec;
    tfa_frame_decoder_init(&dec, rx, sizeof rx);
    uint32_t sent = 0, answers = 0, rounds = 0;
    while (sent < burst_len) {
        uint32_t accepted = 0;
        CHECK(tfa_host_uart_write(dev, burst + sent, burst_len - sent, &accepted) == 0, "write");
        sent += accepted;
        rounds++;
        uint32_t got = tfa_host_uart_read(dev, out, sizeof out);
        for (uint32_t i = 0; i < got; i++) {
            uint32_t bl = 0;
            if (tfa_frame_push(&dec, out[i], &bl) == TFA_FRAME_READY && dec.buf[0] == 0x81) {
                answers++;
            }
        }
    }
    CHECK(answers == 300 && rounds > 1, "burst: %u answers in %u rounds", answers, rounds);

    /* Install with the engine's self-test (good_selftest carries a seed and digest), then INFER. */
    static uint8_t msg[TFA_FRAME_MAX_BODY];
    msg[0] = TFA_MSG_INSTALL_BEGIN;
    msg[1] = 1;
    msg[2] = 0;
    memcpy(msg + 3, pkg.data, TFA_MANIFEST_SIZE);
    CHECK(prv_host_call(dev, msg, 3 + TFA_MANIFEST_SIZE) == 11 && g_out[0] == 0x90, "host begin");
    for (uint32_t off = TFA_MANIFEST_SIZE; off < pkg.len; off += 1000) {
        const uint32_t n = pkg.len - off < 1000 ? pkg.len - off : 1000;
        const uint32_t p = off - TFA_MANIFEST_SIZE;
        msg[0] = TFA_MSG_INSTALL_CHUNK;
        msg[3] = (uint8_t)p;
        msg[4] = (uint8_t)(p >> 8);
        msg[5] = (uint8_t)(p >> 16);
        msg[6] = (uint8_t)(p >> 24);
        memcpy(msg + 7, pkg.data + off, n);
        CHECK(prv_host_call(dev, msg, 7 + n) == 11 && g_out[0] == 0x91, "host chunk at %u", p);
    }
    const uint8_t steps[] = {TFA_MSG_INSTALL_END, TFA_MSG_ACTIVATE, TFA_MSG_SELFTEST, TFA_MSG_CONFIRM};
    for (size_t i = 0; i < sizeof steps; i++) {
        const uint8_t m[3] = {steps[i], 2, 0};
        CHECK(prv_host_call(dev, m, 3) == 5 && g_out[0] == (steps[i] | 0x80), "host step 0x%02x: 0x%02x %s",
              steps[i], g_out[0], g_out[0] == 0xFF ? tfa_err_name(g_out[3]) : "");
    }
    const uint8_t hello[3] = {TFA_MSG_HELLO, 3, 0};
    CHECK(prv_host_call(dev, hello, 3) == 23 && g_out[4] == TFA_FEATURE_INFERENCE, "engine feature");
    const uint8_t infer[13] = {TFA_MSG_INFER, 4, 0, 0, 0, 0, 0, TFA_INFER_RUN, 1, 2, 3, 4, 5};
    uint32_t n = prv_host_call(dev, infer, sizeof infer);
    CHECK(n > 7 && g_out[0] == (TFA_MSG_INFER | 0x80), "infer: %u bytes, type 0x%02x", n, g_out[0]);
    CHECK(tfa_host_memory_bytes(dev) >= flash_size + 16384u, "arena held after INFER");

    /* Power cut: the request in progress gets no answer, the device is off, flash ops counted. */
    const uint32_t ops = tfa_host_flash_ops(dev);
    CHECK(ops > 0, "flash ops counted");
    tfa_host_arm_power_cut(dev, 1, TFA_CUT_HALF, 1);
    msg[0] = TFA_MSG_INSTALL_BEGIN;
    prv_load("good_edges.tfpkg", &pkg);
    memcpy(msg + 3, pkg.data, TFA_MANIFEST_SIZE);
    CHECK(prv_host_call(dev, msg, 3 + TFA_MANIFEST_SIZE) == 0 && !tfa_host_is_on(dev), "cut: no answer");
    CHECK(prv_host_call(dev, hello, 3) == 0, "off: silent");
    CHECK(tfa_host_power_cycle(dev) == 0 && tfa_host_is_on(dev), "power cycle");
    CHECK(prv_host_call(dev, hello, 3) == 23, "answers after power cycle");

    /* Flash image out and back in. */
    static uint8_t image[TFA_FLASH_SIZE_FOR(SECTOR, SLOT)];
    CHECK(tfa_host_flash_read(dev, image, sizeof image - 1) == -TFA_ERR_SIZE_MISMATCH, "read size");
    CHECK(tfa_host_flash_read(dev, image, sizeof image) == 0, "read");
    CHECK(tfa_host_flash_load(dev, image, sizeof image) == 0 && !tfa_host_is_on(dev), "load powers off");
    CHECK(tfa_host_boot(dev) == 0 && prv_host_call(dev, hello, 3) == 23, "boot from the image");
    tfa_host_destroy(dev);
    tfa_host_destroy(NULL);
}

int main(void)
{
    if (tv_load_trusted_key(&g_key) != 0) {
        fprintf(stderr, "test_proto: cannot read key_trusted.pub in %s\n", tv_vector_dir());
        return 1;
    }
    test_hello_and_state();
    test_malformed();
    test_install_lifecycle();
    test_infer_plumbing();
    test_random_messages();
    test_link();
    test_host_device();
    tfa_flash_host_free(&g_fh);
    return test_report("test_proto");
}
