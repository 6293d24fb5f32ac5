/* INFER's engine half (docs/PROTOCOL.md section 3.2): the engine calls and the inference telemetry. proto.c
 * checks the request and calls this through tfa_proto_t.infer, which tfa_proto_init (tfa/proto.h) sets only
 * for a non-NULL engine: an image whose port passes a constant NULL engine does not link this file, nor
 * tfa_telemetry_record and its float arithmetic. */
#include <stddef.h>

#include "le_bytes.h"
#include "tfa/errors.h"
#include "tfa/proto.h"

/* body: u32 input_offset, u8 flags (checked by proto.c), input bytes. With TFA_INFER_RUN the response body
 * is u32 latency_us, then the output tensor's bytes. */
int tfa_proto_infer(tfa_proto_t *p, const uint8_t *body, uint32_t len, uint8_t *out, uint32_t room,
                    uint32_t *out_len)
{
    const tfa_engine_ops_t *e = p->engine;
    const uint32_t n = len - 5u;
    if (n > 0u) {
        int rc = e->write_input(e->ctx, p->rt, tfa_get_le32(body), body + 5, n);
        if (rc != 0) {
            return rc;
        }
    }
    if ((body[4] & TFA_INFER_RUN) == 0u) {
        return 0;
    }
    /* Follow the active model, as TELEMETRY does: its telemetry starts over when it changes. */
    const tfa_manifest_t *m = tfa_active_manifest(p->rt);
    tfa_telemetry_track(&p->telemetry, m != NULL ? m->model_sha256 : NULL);
    uint32_t result_len = 0;
    uint32_t latency_us = 0;
    room -= 4u; /* proto.c hands over at least a frame body; the latency comes first */
    int rc = e->invoke(e->ctx, p->rt, out + 4, room, &result_len, &latency_us);
    if (rc == 0 && result_len > room) {
        rc = -TFA_ERR_BAD_MESSAGE; /* engine overstepped; never report bytes it could not write */
    }
    /* Unknown type: nothing classified. A port without last_run reports no cycles. */
    tfa_infer_run_t run = {0, 0, 0, 0, 0xFFu, 0, 0.0f};
    if (rc == 0 && e->last_run != NULL) {
        rc = e->last_run(e->ctx, p->rt, &run);
    }
    if (rc != 0) {
        p->counters.inference_errors++;
        tfa_telemetry_record_error(&p->telemetry);
        return rc;
    }
    tfa_telemetry_record(&p->telemetry, &run, out + 4, result_len);
    tfa_put_le32(out, latency_us);
    *out_len = 4u + result_len;
    p->counters.inferences++;
    p->counters.latency_us_total += latency_us;
    return 0;
}
