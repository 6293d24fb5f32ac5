/* Inference telemetry kept by the runtime (docs/PROTOCOL.md 3.2.6): what the active model has done
 * since it became active: inferences, errors, latency in CPU cycles, a top-1 class histogram and the
 * sum of top-1 confidences. Fixed size, no allocation; the proto handler updates it on every INFER and
 * resets it when the active model (identified by its SHA-256) changes.
 *
 * Confidence is the dequantized top-1 output value, scale * (q - zero_point), clamped to [0, 1] and
 * kept as a Q16 fixed-point sum (1.0 = 65536), so the mean needs no float on the device. */
#ifndef TFA_TELEMETRY_H
#define TFA_TELEMETRY_H

#include <stdint.h>

#define TFA_TELEMETRY_CLASSES 16u
#define TFA_TELEMETRY_Q16_ONE 65536u

/* What a port's engine tells about one successful inference (tfa_engine_ops_t.last_run). */
typedef struct tfa_infer_run {
    uint64_t cycles;        /* CPU cycles of the invoke (measured, or estimated when flagged) */
    uint32_t cpu_hz;        /* clock that turns cycles into time; 0 if unknown */
    uint32_t arena_bytes;   /* engine arena in use for this model */
    uint8_t estimated;      /* 1: cycles derived from the model's operation count, not measured */
    uint8_t output_type;    /* TFA_TYPE_x of the output tensor (only INT8/UINT8 are classified) */
    int32_t zero_point;     /* output quantization */
    float scale;
} tfa_infer_run_t;

typedef struct tfa_telemetry {
    uint8_t model_sha256[32]; /* model these figures belong to; all zero before the first one */
    uint8_t has_model;
    uint8_t estimated;        /* the latest cycles figure was an estimate */
    uint32_t inferences;      /* successful inferences of this model */
    uint32_t errors;          /* failed INFER runs on this model */
    uint32_t classified;      /* inferences that counted in the histogram and confidence */
    uint32_t cpu_hz;
    uint32_t arena_bytes;
    uint64_t cycles_total;
    uint64_t confidence_q16_total;
    uint32_t histogram[TFA_TELEMETRY_CLASSES];
    uint32_t histogram_other; /* top-1 index >= TFA_TELEMETRY_CLASSES */
} tfa_telemetry_t;

void tfa_telemetry_reset(tfa_telemetry_t *t);

/* Start over if model_sha256 is not the model being tracked (a NULL digest: no active model). */
void tfa_telemetry_track(tfa_telemetry_t *t, const uint8_t *model_sha256);

/* Record one successful inference: out is the first output tensor's bytes as the engine returned them
 * (out_len may be 0). The top-1 is the first maximum. */
void tfa_telemetry_record(tfa_telemetry_t *t, const tfa_infer_run_t *run, const uint8_t *out, uint32_t out_len);

void tfa_telemetry_record_error(tfa_telemetry_t *t);

/* Top-1 of an int8 (is_signed) or uint8 vector: index of the first maximum and its raw value.
 * Returns 0, or -TFA_ERR_BAD_MESSAGE for an empty vector. */
int tfa_telemetry_top1(const uint8_t *out, uint32_t len, int is_signed, uint32_t *index, int32_t *value);

#endif
