/* Delta decoder: golden streams from tinyfleet/signing/delta.py (format versions 1 to 6: version 2 with
 * plain and diff weight runs, runs cut at block ends; version 3 with table runs, exact and bucketed; version 4
 * with literal runs that reuse their block's table; version 5 the same with ladder numbers; version 6 with
 * adaptive frequency literals and numbers) decode
 * to the same bytes in any chunking, across simulated reboots, and corrupt streams are refused without
 * crashing (run under ASan and UBSan). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "delta_host.h"
#include "test_util.h"
#include "tfa/delta.h"
#include "tfa/errors.h"

static uint8_t *prv_load(const char *name, uint32_t *len)
{
    char path[256];
    snprintf(path, sizeof path, "vectors/delta/%s", name);
    uint8_t *buf = test_read_file(path, len);
    if (buf == NULL) {
        fprintf(stderr, "missing vector %s\n", path);
        exit(1);
    }
    return buf;
}

/* Versions 2 (weight runs, t_*.bin), 3 (table runs, t3_*.bin), 4 (literal runs reusing a table, t4_*.bin:
 * its delta and blk streams are t4_new.bin against base.bin), 5 (t5_*.bin: t4's in ladder numbers) and 6
 * (t6_*.bin: t4's with adaptive frequency literals and numbers): every
 * chunking and reboot schedule, then every single-byte corruption. */
static int prv_tensor_vectors(const uint32_t *chunks, size_t n_chunks, const char *const names[3], uint8_t version)
{
    uint32_t base_len, new_len, len[3];
    uint8_t *base = prv_load(version >= 4u ? "base.bin" : "t_base.bin", &base_len);
    uint8_t *expect = prv_load(version >= 4u ? "t4_new.bin" : "t_new.bin", &new_len);
    uint8_t *s[3];
    uint8_t *out = malloc(new_len);
    int cases = 0;
    for (size_t k = 0; k < 3; k++) {
        if (version >= 4u && k == 2) { /* t4_full.bin to t6_full.bin are t_new.bin alone */
            free(expect);
            free(out);
            expect = prv_load("t_new.bin", &new_len);
            out = malloc(new_len);
        }
        s[k] = prv_load(names[k], &len[k]);
        CHECK(len[k] > 3 && s[k][2] == version, "%s is a format version %u stream", names[k], version);
        uint32_t blen = k == 2 ? 0u : base_len;
        for (size_t i = 0; i < n_chunks; i++) {
            for (uint32_t reboot = 0; reboot <= 2; reboot += 2) {
                memset(out, 0xAA, new_len);
                int rc = tfa_host_delta_apply(base, blen, s[k], len[k], out, new_len, chunks[i], reboot);
                CHECK(rc == 0 && memcmp(out, expect, new_len) == 0, "%s chunk %u reboot every %u: rc %d",
                      names[k], chunks[i], reboot, rc);
                cases++;
            }
        }
        uint8_t *bad = malloc(len[k]);
        for (uint32_t at = 0; at < len[k]; at = at < 32 ? at + 1 : at + 5) {
            memcpy(bad, s[k], len[k]);
            bad[at] ^= 0xA5;
            (void)tfa_host_delta_apply(base, blen, bad, len[k], out, new_len, 77, 0);
            cases++;
        }
        free(bad);
        free(s[k]);
    }
    free(out);
    free(base);
    free(expect);
    return cases;
}

/* A checkpoint's version bits (has_base bits 1-5) are 0, 1, 3, 7, 15 or 31: each version includes the ones
 * before; anything else is refused on resume (no flash is touched before the first chunk). */
static int prv_resume_version_bits(void)
{
    static tfa_delta_t d;
    static const tfa_flash_t flash = {0};
    int cases = 0;
    for (uint32_t bits = 0; bits < 64u; bits++) {
        tfa_delta_checkpoint_t cp = {.in_offset = 8, .out_offset = 0, .block_log2 = 10, .move_bits = 4,
                                     .has_base = (uint8_t)(bits << 1 | 1u), .valid = 1};
        int valid = bits == 0 || bits == 1 || bits == 3 || bits == 7 || bits == 15 || bits == 31;
        int rc = tfa_delta_resume(&d, &flash, 0, 100, 4096, 100, &cp);
        CHECK((rc == 0) == valid, "resume with version bits %u: rc %d", bits, rc);
        cases++;
    }
    return cases;
}

/* Models of 2 GiB or more are refused at begin and resume: below that, positions and displacements fit the
 * decoder's 32-bit arithmetic (prv_copy and the literals test sources with unsigned wrap-around). */
static int prv_size_limits(void)
{
    static tfa_delta_t d;
    static const tfa_flash_t flash = {0};
    static const uint32_t sizes[] = {1u, 0x7FFFFFFFu, 0x80000000u, 0xFFFFFFFFu};
    tfa_delta_checkpoint_t cp = {.in_offset = 8, .out_offset = 0, .block_log2 = 10, .move_bits = 4,
                                 .has_base = 1u, .valid = 1};
    int cases = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        int fits = sizes[i] <= 0x7FFFFFFFu;
        CHECK((tfa_delta_begin(&d, &flash, 0, 100, 4096, sizes[i]) == 0) == fits, "begin, model of %u bytes",
              sizes[i]);
        CHECK((tfa_delta_begin(&d, &flash, 0, sizes[i], 4096, 100) == 0) == fits, "begin, base of %u bytes",
              sizes[i]);
        CHECK((tfa_delta_resume(&d, &flash, 0, sizes[i], 4096, 100, &cp) == 0) == fits,
              "resume, base of %u bytes", sizes[i]);
        cases += 3;
    }
    return cases;
}

int main(void)
{
    uint32_t base_len, new_len, delta_len, full_len, blk_len;
    uint8_t *base = prv_load("base.bin", &base_len);
    uint8_t *expect = prv_load("new.bin", &new_len);
    uint8_t *stream = prv_load("delta.bin", &delta_len);
    uint8_t *full = prv_load("full.bin", &full_len);
    uint8_t *blk = prv_load("blk.bin", &blk_len);
    uint8_t *out = malloc(new_len);
    static const uint32_t chunks[] = {1, 3, 64, 127, 1024, 5000, 1u << 20};
    int cases = 0;
    int undetected = 0;

    CHECK(tfa_host_delta_state_size() <= 8192u, "decoder state fits in 8 KiB");
    for (size_t i = 0; i < sizeof chunks / sizeof chunks[0]; i++) {
        struct { const uint8_t *s; uint32_t len; uint32_t base_len; const char *name; } streams[] = {
            {stream, delta_len, base_len, "delta"}, {full, full_len, 0, "full"}, {blk, blk_len, base_len, "blk"}};
        for (size_t k = 0; k < 3; k++) {
            for (uint32_t reboot = 0; reboot <= 3; reboot += 3) {
                memset(out, 0xAA, new_len);
                int rc = tfa_host_delta_apply(base, streams[k].base_len, streams[k].s, streams[k].len, out, new_len,
                                              chunks[i], reboot);
                CHECK(rc == 0 && memcmp(out, expect, new_len) == 0, "%s chunk %u reboot every %u: rc %d",
                      streams[k].name, chunks[i], reboot, rc);
                cases++;
            }
        }
    }
    /* Wrong base size, wrong output size, truncation and every single-byte corruption of the header and
     * of a sample of body bytes: an error or a wrong output, never a crash (ASan/UBSan watch). */
    CHECK(tfa_host_delta_apply(base, base_len - 1, stream, delta_len, out, new_len, 64, 0) ==
              -TFA_ERR_DELTA_CORRUPT, "base of the wrong size is refused");
    CHECK(tfa_host_delta_apply(base, base_len, stream, delta_len, out, new_len - 1, 64, 0) ==
              -TFA_ERR_DELTA_CORRUPT, "output of the wrong size is refused");
    for (uint32_t cut = 0; cut < delta_len; cut += 7) {
        int rc = tfa_host_delta_apply(base, base_len, stream, cut, out, new_len, 64, 0);
        CHECK(rc < 0, "truncated at %u refused", cut);
        cases++;
    }
    uint8_t *bad = malloc(delta_len);
    for (uint32_t at = 0; at < delta_len; at = at < 32 || at + 13 >= delta_len ? at + 1 : at + 13) {
        memcpy(bad, stream, delta_len);
        bad[at] ^= 0x5A;
        int rc = tfa_host_delta_apply(base, base_len, bad, delta_len, out, new_len, 100, 0);
        /* the last coded bytes of a block may be range-coder padding the decoder never needs */
        if (rc == 0 && memcmp(out, expect, new_len) == 0) {
            undetected++;
            if (at < delta_len - 4) {
                fprintf(stderr, "undetected flip at %u of %u\n", at, delta_len);
            }
        }
        cases++;
    }
    static const char *const v2_names[3] = {"t_delta.bin", "t_blk.bin", "t_full.bin"};
    static const char *const v3_names[3] = {"t3_delta.bin", "t3_blk.bin", "t3_full.bin"};
    cases += prv_tensor_vectors(chunks, sizeof chunks / sizeof chunks[0], v2_names, 2u);
    cases += prv_tensor_vectors(chunks, sizeof chunks / sizeof chunks[0], v3_names, 3u);
    static const char *const v4_names[3] = {"t4_delta.bin", "t4_blk.bin", "t4_full.bin"};
    cases += prv_tensor_vectors(chunks, sizeof chunks / sizeof chunks[0], v4_names, 4u);
    static const char *const v5_names[3] = {"t5_delta.bin", "t5_blk.bin", "t5_full.bin"};
    cases += prv_tensor_vectors(chunks, sizeof chunks / sizeof chunks[0], v5_names, 5u);
    static const char *const v6_names[3] = {"t6_delta.bin", "t6_blk.bin", "t6_full.bin"};
    cases += prv_tensor_vectors(chunks, sizeof chunks / sizeof chunks[0], v6_names, 6u);
    cases += prv_resume_version_bits();
    cases += prv_size_limits();
    printf("test_delta: %d cases (%d padding flips harmless), decoder state %u bytes, %d failures\n", cases,
           undetected, tfa_host_delta_state_size(), test_failures);
    free(bad);
    free(out);
    free(base);
    free(expect);
    free(stream);
    free(full);
    free(blk);
    return test_failures ? 1 : 0;
}
