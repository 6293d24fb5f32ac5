/* The message handler shared by every port, see tfa/proto.h and docs/PROTOCOL.md section 3.2. */
#include "tfa/proto.h"

#include <string.h>

#include "le_bytes.h"
#include "tfa/errors.h"

/* Fixed sizes of response bodies (section 3.2), checked against out_cap once. */
#define PRV_HELLO_BODY 20u
#define PRV_SLOT_BODY 87u
#define PRV_STATE_HEADER 28u
#define PRV_STATE_BODY (PRV_STATE_HEADER + 2u * PRV_SLOT_BODY)
#define PRV_TELEMETRY_BODY 188u

/* A response under construction: header written, body appended after it. */
typedef struct {
    uint8_t *buf;
    uint32_t len;
} prv_reply_t;

static prv_reply_t prv_begin(uint8_t *out, uint8_t type, uint16_t request_id)
{
    out[0] = type;
    tfa_put_le16(out + 1, request_id);
    prv_reply_t r = {out, TFA_MSG_HEADER_SIZE};
    return r;
}

static uint8_t *prv_body(prv_reply_t *r, uint32_t n)
{
    uint8_t *p = r->buf + r->len;
    r->len += n;
    return p;
}

/* ERROR: u8 code, u8 request type, ASCII detail (the code's name). */
static uint32_t prv_error(tfa_proto_t *p, uint8_t *out, uint16_t request_id, uint8_t request_type, int err)
{
    int code = err < 0 ? -err : err;
    if (code <= 0 || code > 0xFF) {
        code = TFA_ERR_BAD_STATE; /* a runtime must never return these; keep the reply well formed */
    }
    prv_reply_t r = prv_begin(out, TFA_MSG_ERROR, request_id);
    uint8_t *b = prv_body(&r, 2);
    b[0] = (uint8_t)code;
    b[1] = request_type;
#if !TFA_NO_ERROR_NAMES /* else no detail: the host names the code */
    const char *name = tfa_err_name(code);
    uint32_t n = (uint32_t)strlen(name);
    if (n > TFA_PROTO_MAX_DETAIL) {
        n = TFA_PROTO_MAX_DETAIL;
    }
    memcpy(prv_body(&r, n), name, n);
#endif
    p->counters.error_responses++;
    return r.len;
}

/* A slot's fields are filled when it holds a valid model or is the download target (whose manifest the
 * runtime reports with valid = 0); zero otherwise. */
static void prv_put_slot(uint8_t *b, const tfa_slot_info_t *s, int is_target)
{
    memset(b, 0, PRV_SLOT_BODY);
    if (!s->valid && !is_target) {
        return;
    }
    const tfa_manifest_t *m = &s->manifest;
    b[0] = s->valid ? 1u : 0u;
    memcpy(b + 1, m->model_name, sizeof m->model_name);
    b[32] = 0; /* the name is NUL-terminated on the wire whatever the runtime stored */
    tfa_put_le16(b + 33, m->version[0]);
    tfa_put_le16(b + 35, m->version[1]);
    tfa_put_le16(b + 37, m->version[2]);
    tfa_put_le32(b + 39, m->sequence);
    tfa_put_le32(b + 43, m->security_counter);
    tfa_put_le32(b + 47, m->model_size);
    tfa_put_le32(b + 51, m->arena_bytes);
    memcpy(b + 55, m->model_sha256, 32);
}

static int prv_state(tfa_proto_t *p, prv_reply_t *r)
{
    tfa_status_t *st = &p->scratch;
    int rc = tfa_runtime_status(p->rt, st);
    if (rc != 0) {
        return rc;
    }
    const tfa_device_config_t *cfg = p->rt->config;
    uint8_t *b = prv_body(r, PRV_STATE_BODY);
    b[0] = st->phase;
    b[1] = st->active_slot;
    b[2] = st->target_slot;
    b[3] = st->boot_attempts;
    b[4] = st->last_error;
    b[5] = st->selftest_passed;
    b[6] = 0; /* reserved */
    b[7] = 0;
    tfa_put_le32(b + 8, st->security_floor);
    tfa_put_le32(b + 12, st->download_offset);
    tfa_put_le32(b + 16, st->download_size);
    tfa_put_le32(b + 20, cfg->runtime_version);
    tfa_put_le32(b + 24, cfg->hardware_class);
    for (uint8_t i = 0; i < 2u; i++) {
        prv_put_slot(b + PRV_STATE_HEADER + i * PRV_SLOT_BODY, &st->slots[i], st->target_slot == i);
    }
    return 0;
}

static void prv_hello(const tfa_proto_t *p, prv_reply_t *r)
{
    const tfa_device_config_t *cfg = p->rt->config;
    uint8_t *b = prv_body(r, PRV_HELLO_BODY);
    b[0] = (uint8_t)TFA_PROTO_VERSION;
    b[1] = p->engine != NULL ? (uint8_t)TFA_FEATURE_INFERENCE : 0u;
    tfa_put_le16(b + 2, TFA_FRAME_MAX_BODY);
    tfa_put_le32(b + 4, cfg->runtime_version);
    tfa_put_le32(b + 8, cfg->hardware_class);
    tfa_put_le32(b + 12, cfg->ram_budget);
    tfa_put_le32(b + 16, cfg->slot_size);
}

/* Download progress after INSTALL_BEGIN / INSTALL_CHUNK: u32 offset, u32 size. */
static int prv_progress(tfa_proto_t *p, prv_reply_t *r)
{
    int rc = tfa_runtime_status(p->rt, &p->scratch);
    if (rc != 0) {
        return rc;
    }
    uint8_t *b = prv_body(r, 8);
    tfa_put_le32(b, p->scratch.download_offset);
    tfa_put_le32(b + 4, p->scratch.download_size);
    return 0;
}

/* Phase and active slot after a state change: u8 phase, u8 active_slot. */
static int prv_phase(tfa_proto_t *p, prv_reply_t *r)
{
    int rc = tfa_runtime_status(p->rt, &p->scratch);
    if (rc != 0) {
        return rc;
    }
    uint8_t *b = prv_body(r, 2);
    b[0] = p->scratch.phase;
    b[1] = p->scratch.active_slot;
    return 0;
}

static void prv_put_u64(uint8_t *p, uint64_t v)
{
    tfa_put_le32(p, (uint32_t)v);
    tfa_put_le32(p + 4, (uint32_t)(v >> 32));
}

/* Follow the active model: its telemetry starts over when it changes. */
static void prv_track_active(tfa_proto_t *p)
{
    const tfa_manifest_t *m = tfa_active_manifest(p->rt);
    tfa_telemetry_track(&p->telemetry, m != NULL ? m->model_sha256 : NULL);
}

/* Bytes 48..187: the active model's inference telemetry (section 3.2.6). */
static void prv_put_model_telemetry(uint8_t *b, const tfa_telemetry_t *t)
{
    b[0] = (uint8_t)((t->estimated ? 1u : 0u) | (t->has_model ? 2u : 0u));
    b[1] = (uint8_t)TFA_TELEMETRY_CLASSES;
    b[2] = 0; /* reserved */
    b[3] = 0;
    memcpy(b + 4, t->model_sha256, 32);
    tfa_put_le32(b + 36, t->inferences);
    tfa_put_le32(b + 40, t->errors);
    tfa_put_le32(b + 44, t->classified);
    tfa_put_le32(b + 48, t->cpu_hz);
    tfa_put_le32(b + 52, t->arena_bytes);
    prv_put_u64(b + 56, t->cycles_total);
    prv_put_u64(b + 64, t->confidence_q16_total);
    for (uint32_t i = 0; i < TFA_TELEMETRY_CLASSES; i++) {
        tfa_put_le32(b + 72u + 4u * i, t->histogram[i]);
    }
    tfa_put_le32(b + 72u + 4u * TFA_TELEMETRY_CLASSES, t->histogram_other);
}

static void prv_telemetry(tfa_proto_t *p, prv_reply_t *r)
{
    prv_track_active(p);
    const tfa_proto_counters_t *c = &p->counters;
    uint8_t *b = prv_body(r, PRV_TELEMETRY_BODY);
    tfa_put_le32(b, c->frames_ok);
    tfa_put_le32(b + 4, c->frame_crc_errors);
    tfa_put_le32(b + 8, c->frame_decode_errors);
    tfa_put_le32(b + 12, c->frame_too_long);
    tfa_put_le32(b + 16, c->requests);
    tfa_put_le32(b + 20, c->error_responses);
    tfa_put_le32(b + 24, c->chunk_bytes);
    tfa_put_le32(b + 28, c->installs_completed);
    tfa_put_le32(b + 32, c->inferences);
    tfa_put_le32(b + 36, c->inference_errors);
    prv_put_u64(b + 40, c->latency_us_total);
    prv_put_model_telemetry(b + 48, &p->telemetry);
}

/* INFER body: u32 input_offset, u8 flags, input bytes. The engine's half is p->infer (proto_infer.c). */
static int prv_infer(tfa_proto_t *p, const uint8_t *body, uint32_t len, prv_reply_t *r, uint32_t out_cap)
{
    if (len < 5u || (body[4] & (uint8_t)~TFA_INFER_RUN) != 0u) {
        return -TFA_ERR_BAD_MESSAGE;
    }
    if (p->infer == NULL) {
        return -TFA_ERR_UNSUPPORTED_OP; /* no engine wired into this build yet */
    }
    uint32_t n = 0;
    int rc = p->infer(p, body, len, r->buf + r->len, out_cap - r->len, &n);
    r->len += n;
    return rc;
}

/* Requests whose body must be empty. */
static int prv_needs_empty(uint8_t type)
{
    switch (type) {
    case TFA_MSG_HELLO:
    case TFA_MSG_STATE:
    case TFA_MSG_INSTALL_END:
    case TFA_MSG_ACTIVATE:
    case TFA_MSG_SELFTEST:
    case TFA_MSG_CONFIRM:
    case TFA_MSG_REVERT:
    case TFA_MSG_INSTALL_ABORT:
    case TFA_MSG_TELEMETRY: return 1;
    default: return 0;
    }
}

static int prv_dispatch(tfa_proto_t *p, uint8_t type, const uint8_t *body, uint32_t len, prv_reply_t *r,
                        uint32_t out_cap)
{
    if (prv_needs_empty(type) && len != 0u) {
        return -TFA_ERR_BAD_MESSAGE;
    }
    int rc;
    switch (type) {
    case TFA_MSG_HELLO: prv_hello(p, r); return 0;
    case TFA_MSG_STATE: return prv_state(p, r);
    case TFA_MSG_TELEMETRY: prv_telemetry(p, r); return 0;
    case TFA_MSG_INFER: return prv_infer(p, body, len, r, out_cap);
    case TFA_MSG_INSTALL_BEGIN:
        rc = tfa_install_begin(p->rt, body, len);
        return rc != 0 ? rc : prv_progress(p, r);
    case TFA_MSG_INSTALL_CHUNK:
        if (len < 5u) {
            return -TFA_ERR_BAD_MESSAGE; /* offset and at least one data byte */
        }
        rc = tfa_install_chunk(p->rt, tfa_get_le32(body), body + 4, len - 4u);
        if (rc != 0) {
            return rc;
        }
        p->counters.chunk_bytes += len - 4u;
        return prv_progress(p, r);
#ifndef TFA_NO_ENCRYPTION
    case TFA_MSG_INSTALL_KEY:
        if (len != TFA_KEY_WRAP_SIZE) {
            return -TFA_ERR_BAD_MESSAGE;
        }
        rc = tfa_install_key(p->rt, body);
        return rc != 0 ? rc : prv_progress(p, r);
#endif
    case TFA_MSG_INSTALL_END:
        rc = tfa_install_end(p->rt);
        if (rc != 0) {
            return rc;
        }
        p->counters.installs_completed++;
        return prv_phase(p, r);
    case TFA_MSG_INSTALL_ABORT: rc = tfa_install_abort(p->rt); break;
    case TFA_MSG_ACTIVATE: rc = tfa_activate(p->rt); break;
    case TFA_MSG_SELFTEST: rc = tfa_selftest(p->rt); break;
    case TFA_MSG_CONFIRM: rc = tfa_confirm(p->rt); break;
    case TFA_MSG_REVERT: rc = tfa_revert(p->rt); break;
    default: return -TFA_ERR_UNKNOWN_MESSAGE;
    }
    return rc != 0 ? rc : prv_phase(p, r);
}

void tfa_proto_init_with(tfa_proto_t *p, tfa_runtime_t *rt, const tfa_engine_ops_t *engine,
                         tfa_proto_infer_fn infer)
{
    memset(p, 0, sizeof *p);
    p->rt = rt;
    p->engine = engine;
    p->infer = infer;
}

int tfa_proto_handle(tfa_proto_t *p, const uint8_t *in, uint32_t in_len, uint8_t *out, uint32_t out_cap,
                     uint32_t *out_len)
{
    *out_len = 0;
    if (out_cap < TFA_FRAME_MAX_BODY) {
        return -TFA_ERR_BAD_MESSAGE;
    }
    p->counters.requests++;
    if (in_len < TFA_MSG_HEADER_SIZE) {
        *out_len = prv_error(p, out, 0, in_len > 0u ? in[0] : 0u, -TFA_ERR_BAD_MESSAGE);
        return 0;
    }
    const uint8_t type = in[0];
    const uint16_t id = tfa_get_le16(in + 1);
    prv_reply_t r = prv_begin(out, (uint8_t)(type | TFA_MSG_RESPONSE), id);
    int rc = (type & TFA_MSG_RESPONSE) != 0u
                 ? -TFA_ERR_UNKNOWN_MESSAGE /* a response type sent as a request */
                 : prv_dispatch(p, type, in + TFA_MSG_HEADER_SIZE, in_len - TFA_MSG_HEADER_SIZE, &r, out_cap);
    *out_len = rc != 0 ? prv_error(p, out, id, type, rc) : r.len;
    return 0;
}

int tfa_proto_frame_error(tfa_proto_t *p, int err, uint8_t *out, uint32_t out_cap, uint32_t *out_len)
{
    *out_len = 0;
    if (out_cap < TFA_FRAME_MAX_BODY) {
        return -TFA_ERR_BAD_MESSAGE;
    }
    switch (err) {
    case -TFA_ERR_FRAME_CRC: p->counters.frame_crc_errors++; break;
    case -TFA_ERR_FRAME_TOO_LONG: p->counters.frame_too_long++; break;
    default: p->counters.frame_decode_errors++; err = -TFA_ERR_FRAME_DECODE; break;
    }
    *out_len = prv_error(p, out, 0, 0, err);
    return 0;
}

int tfa_link_rx(tfa_link_t *l, uint8_t byte, uint8_t *tx, uint32_t tx_cap, uint32_t *tx_len)
{
    *tx_len = 0;
    if (tx_cap < TFA_FRAME_MAX_ENCODED) {
        return -TFA_ERR_BAD_MESSAGE;
    }
    uint32_t body_len = 0;
    uint32_t reply_len = 0;
    int rc = tfa_frame_push(&l->dec, byte, &body_len);
    if (rc == 0) {
        return 0;
    }
    if (rc == TFA_FRAME_READY) {
        l->proto.counters.frames_ok++;
        rc = tfa_proto_handle(&l->proto, l->rx, body_len, l->reply, sizeof l->reply, &reply_len);
    } else {
        rc = tfa_proto_frame_error(&l->proto, rc, l->reply, sizeof l->reply, &reply_len);
    }
    if (rc != 0) {
        return rc;
    }
    return tfa_frame_encode(l->reply, reply_len, tx, tx_cap, tx_len);
}
