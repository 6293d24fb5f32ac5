/* Unit test of the inference telemetry module (tfa/telemetry.h). */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "tfa/engine.h"
#include "tfa/errors.h"
#include "tfa/telemetry.h"

static const tfa_infer_run_t k_softmax = {1000u, 25000000u, 4096u, 1u, TFA_TYPE_INT8, -128, 1.0f / 256.0f};

static void test_top1(void)
{
    uint32_t idx = 99;
    int32_t v = 0;
    const uint8_t s8[4] = {0x80, 0x05, 0xFF, 0x05}; /* -128, 5, -1, 5: first maximum wins */
    CHECK(tfa_telemetry_top1(s8, 4, 1, &idx, &v) == 0 && idx == 1 && v == 5, "int8 top1 %u %d", idx, v);
    CHECK(tfa_telemetry_top1(s8, 4, 0, &idx, &v) == 0 && idx == 2 && v == 255, "uint8 top1 %u %d", idx, v);
    CHECK(tfa_telemetry_top1(s8, 0, 1, &idx, &v) == -TFA_ERR_BAD_MESSAGE, "empty vector refused");
}

static void test_record(void)
{
    static const uint8_t sha_a[32] = {1};
    static const uint8_t sha_b[32] = {2};
    tfa_telemetry_t t;
    tfa_telemetry_reset(&t);
    tfa_telemetry_track(&t, sha_a);
    CHECK(t.has_model && memcmp(t.model_sha256, sha_a, 32) == 0, "tracks the model");
    const uint8_t out1[3] = {0x80, 0x7F, 0x00};       /* class 1, q = 127 -> 255/256 */
    const uint8_t out2[3] = {0x00, 0x80, 0x80};       /* class 0, q = 0   -> 128/256 */
    tfa_telemetry_record(&t, &k_softmax, out1, 3);
    tfa_telemetry_record(&t, &k_softmax, out2, 3);
    tfa_telemetry_record(&t, &k_softmax, out2, 3);
    tfa_telemetry_record_error(&t);
    CHECK(t.inferences == 3 && t.errors == 1 && t.classified == 3, "counts");
    CHECK(t.histogram[0] == 2 && t.histogram[1] == 1 && t.histogram_other == 0, "histogram");
    CHECK(t.confidence_q16_total == 65280u + 2u * 32768u, "confidence sum %llu",
          (unsigned long long)t.confidence_q16_total);
    CHECK(t.cycles_total == 3000u && t.cpu_hz == 25000000u && t.arena_bytes == 4096u && t.estimated == 1,
          "cycles, clock, arena, estimate flag");
    tfa_telemetry_track(&t, sha_a);
    CHECK(t.inferences == 3, "same model: kept");
    tfa_telemetry_track(&t, sha_b);
    CHECK(t.inferences == 0 && t.errors == 0 && t.histogram[0] == 0 && t.cycles_total == 0 &&
              memcmp(t.model_sha256, sha_b, 32) == 0,
          "new model: reset");
    tfa_telemetry_track(&t, NULL);
    CHECK(!t.has_model, "no active model: reset");
}

static void test_edges(void)
{
    tfa_telemetry_t t;
    tfa_telemetry_reset(&t);
    uint8_t wide[40];
    memset(wide, 0, sizeof wide);
    wide[20] = 0x7F;
    tfa_telemetry_record(&t, &k_softmax, wide, sizeof wide);
    CHECK(t.histogram_other == 1 && t.classified == 1, "class beyond the histogram");
    tfa_infer_run_t logits = k_softmax;
    logits.scale = 0.5f;
    logits.zero_point = 0;
    const uint8_t neg[2] = {0xF0, 0xF8};              /* all negative: confidence 0 */
    tfa_telemetry_record(&t, &logits, neg, 2);
    const uint8_t big[2] = {0x10, 0x7F};              /* 63.5: clamped to 1.0 */
    tfa_telemetry_record(&t, &logits, big, 2);
    CHECK(t.confidence_q16_total == 65280u + 0u + 65536u,
          "clamped confidences %llu", (unsigned long long)t.confidence_q16_total);
    tfa_infer_run_t f32 = k_softmax;
    f32.output_type = TFA_TYPE_FLOAT32;
    tfa_telemetry_record(&t, &f32, big, 2);
    CHECK(t.inferences == 4 && t.classified == 3, "float output counted, not classified");
    tfa_telemetry_record(&t, &k_softmax, big, 0);
    CHECK(t.inferences == 5 && t.classified == 3, "empty output counted, not classified");
}

int main(void)
{
    test_top1();
    test_record();
    test_edges();
    return test_report("test_telemetry");
}
