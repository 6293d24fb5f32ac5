/* Power-cut campaign over encrypted installs (docs/PROTOCOL.md section 6): the same driver and invariant
 * as test_powercut.c and test_powercut_delta.c (tests/support/powercut_campaign.c), with the packages of
 * tests/vectors/encrypted (make_encrypted_packages.py): an encrypted raw package and an encrypted delta
 * and compressed package. The content key lives in RAM only, so after every cut and reboot the driver
 * sends begin (resume) and the key wrap again before the chunks continue at the resume offset, where the
 * key stream is seeked to. The final model must be the clear model, byte for byte (decrypted into RAM:
 * the slots keep it encrypted at rest, PROTOCOL 6.6); two campaigns start from an encrypted old model. */
#include <stdlib.h>
#include <string.h>

#include "powercut_campaign.h"

static tfa_delta_t g_workspace;

static void prv_campaign(const char *package, const char *wrap, const char *model, uint32_t sector,
                         uint32_t chunk, int all_modes, int decoded, const char *old_wrap)
{
    const pc_config_t cfg = {
        .package = package,
        .expect_model = model,
        .sector = sector,
        .chunk = chunk,
        .old_model_chunk = 512,
        .check_base_slot = decoded,
        .check_resume_offset = 1,
        .workspace = decoded ? &g_workspace : NULL,
        .wrap = wrap,
        .device_key = "encrypted/device.key",
        .old_wrap = old_wrap,
        .schedule = {.seed_base = 0xE7C0DEu, .seed_step = 13u, .boot_seed_offset = 55u,
                     .boot_cut_on_odd_runs = 1, .resume_step = 3u, .resume_span = 11u},
    };
    pc_campaign_t c;
    if (pc_open(&c, &cfg) != 0) {
        return;
    }
    pc_measure(&c);
    int before = test_failures;
    pc_cut_everywhere(&c, all_modes);
    const pc_counts_t *n = &c.counts;
    CHECK(n->resumed_mid_download > 0u, "%s: some cut left a download to resume past its start", package);
    printf("power-cut campaign %s%s: sector %u, chunk %u: %u cut points x %s tear modes = %u runs (+%u cuts "
           "during resumes, +%u during boots), %u reboots resumed mid-download; %s\n",
           package, old_wrap != NULL ? " on an encrypted base" : "", c.dev->sector_size, chunk, n->cut_points, all_modes ? "4" : "1 of 4", n->runs,
           n->resume_cuts, n->boot_cuts, n->resumed_mid_download,
           test_failures == before ? "invariant held" : "FAILED");
    pc_close(&c);
}

int main(void)
{
    prv_campaign("encrypted/good.tfpkg", "encrypted/good.wrap", "model.tflite", 256, 200, 1, 0, NULL);
    prv_campaign("encrypted/delta_good.tfpkg", "encrypted/delta_good.wrap", "model_update.tflite", 256, 8, 1,
                 1, NULL);
    prv_campaign("encrypted/compressed_good.tfpkg", "encrypted/compressed_good.wrap", "model_update.tflite",
                 256, 96, 1, 1, NULL);
    /* Both models encrypted at rest: the delta's base is read back through the storage key stream. */
    prv_campaign("encrypted/delta_good.tfpkg", "encrypted/delta_good.wrap", "model_update.tflite", 256, 8, 1,
                 1, "encrypted/good_active.wrap");
    prv_campaign("encrypted/good.tfpkg", "encrypted/good.wrap", "model.tflite", 256, 200, 1, 0,
                 "encrypted/good_active.wrap");
    return test_report("test_powercut_encrypted");
}
