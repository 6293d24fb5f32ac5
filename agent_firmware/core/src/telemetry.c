/* Inference telemetry, see tfa/telemetry.h. */
#include "tfa/telemetry.h"

#include <string.h>

#include "tfa/engine.h"
#include "tfa/errors.h"

void tfa_telemetry_reset(tfa_telemetry_t *t)
{
    memset(t, 0, sizeof *t);
}

void tfa_telemetry_track(tfa_telemetry_t *t, const uint8_t *model_sha256)
{
    if (model_sha256 == NULL) {
        if (t->has_model) {
            tfa_telemetry_reset(t);
        }
        return;
    }
    if (!t->has_model || memcmp(t->model_sha256, model_sha256, 32) != 0) {
        tfa_telemetry_reset(t);
        memcpy(t->model_sha256, model_sha256, 32);
        t->has_model = 1;
    }
}

int tfa_telemetry_top1(const uint8_t *out, uint32_t len, int is_signed, uint32_t *index, int32_t *value)
{
    if (len == 0u) {
        return -TFA_ERR_BAD_MESSAGE;
    }
    uint32_t best = 0;
    int32_t best_v = is_signed ? (int32_t)(int8_t)out[0] : (int32_t)out[0];
    for (uint32_t i = 1; i < len; i++) {
        const int32_t v = is_signed ? (int32_t)(int8_t)out[i] : (int32_t)out[i];
        if (v > best_v) {
            best_v = v;
            best = i;
        }
    }
    *index = best;
    *value = best_v;
    return 0;
}

/* scale * (q - zp) in Q16, clamped to [0, 1]: a confidence, whatever the output's quantization. */
static uint32_t prv_confidence_q16(const tfa_infer_run_t *run, int32_t q)
{
    const float v = run->scale * (float)(q - run->zero_point);
    if (!(v > 0.0f)) {
        return 0u; /* also NaN */
    }
    if (v >= 1.0f) {
        return TFA_TELEMETRY_Q16_ONE;
    }
    return (uint32_t)(v * (float)TFA_TELEMETRY_Q16_ONE + 0.5f);
}

void tfa_telemetry_record(tfa_telemetry_t *t, const tfa_infer_run_t *run, const uint8_t *out, uint32_t out_len)
{
    t->inferences++;
    t->cycles_total += run->cycles;
    t->estimated = run->estimated;
    t->cpu_hz = run->cpu_hz;
    t->arena_bytes = run->arena_bytes;
    const int is_signed = run->output_type == TFA_TYPE_INT8;
    if (!is_signed && run->output_type != TFA_TYPE_UINT8) {
        return; /* float or wider outputs: counted, not classified */
    }
    uint32_t index = 0;
    int32_t value = 0;
    if (tfa_telemetry_top1(out, out_len, is_signed, &index, &value) != 0) {
        return;
    }
    t->classified++;
    if (index < TFA_TELEMETRY_CLASSES) {
        t->histogram[index]++;
    } else {
        t->histogram_other++;
    }
    t->confidence_q16_total += prv_confidence_q16(run, value);
}

void tfa_telemetry_record_error(tfa_telemetry_t *t)
{
    t->errors++;
}
