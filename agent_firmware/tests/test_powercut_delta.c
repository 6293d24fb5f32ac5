/* Power-cut campaign over compressed and delta installs (test_powercut.c does the same for raw ones; the
 * driver, with the invariant it checks after every cut, is tests/support/powercut_campaign.c).
 * A device runs good_active.tfpkg (sequence 5, confirmed; its model is the delta's base) and installs
 * delta_good.tfpkg or compressed_good.tfpkg, or their format version 2 twins delta_v2_good.tfpkg and
 * compressed_v2_good.tfpkg, or the version 3 to 6 delta_v3_good.tfpkg, delta_v4_good.tfpkg,
 * delta_v5_good.tfpkg and delta_v6_good.tfpkg (sequence 6,
 * model_update.tflite, 1 KiB blocks) in small chunks: begin, chunks, end, activate, selftest, confirm.
 * The reference run counts its flash program/erase operations; then for every cut index k in 1..N and every tear mode the power goes during
 * operation k. After power-on and reboot (in half the runs with a second cut during the boot itself):
 *   - the state area parses and is not corrupt,
 *   - the active model is complete and authentic, the old (5) or the new (6) one,
 *   - a new model whose confirm returned 0 stays active and confirmed,
 *   - the base slot (slot 0) holds exactly its bytes from before the install,
 *   - a download in progress resumes at the block boundary its record holds.
 * Then the install is resumed from the reported offset (with a second cut during the resume in half the
 * runs) until the new model is confirmed, byte for byte model_update.tflite. With 256-byte sectors the
 * state log (5 records per sector) compacts several times during an install, so compactions are cut too;
 * one campaign starts with the 4 KiB log nearly full. */
#include <stdlib.h>
#include <string.h>

#include "powercut_campaign.h"

static tfa_delta_t g_workspace;

/* Returns the number of cut points (flash operations of the install). all_modes 0: one tear mode per cut
 * point, in turn (for the long compressed stream). room > 0: the state log is first filled until only
 * room record positions are left in its sector, so that it compacts in the middle of the install. */
static uint32_t prv_campaign(const char *name, uint32_t sector, uint32_t chunk, int all_modes, uint32_t room)
{
    const pc_config_t cfg = {
        .package = name,
        .expect_model = "model_update.tflite",
        .sector = sector,
        .chunk = chunk,
        .old_model_chunk = 512,
        .check_base_slot = 1,
        .check_resume_offset = 1,
        .workspace = &g_workspace,
        .schedule = {.seed_base = 0xC0FFEEu, .seed_step = 17u, .boot_seed_offset = 77u,
                     .boot_cut_on_odd_runs = 1, .resume_step = 5u, .resume_span = 13u},
    };
    pc_campaign_t c;
    if (pc_open(&c, &cfg) != 0) {
        return 0;
    }
    tv_device_t *d = c.dev;
    uint32_t per_sector = d->fh.flash.sector_size / TFA_STATE_RECORD_SIZE;
    while (room > 0u && d->rt.log.next_index + room < per_sector) {
        if (tfa_state_save(&d->rt.log, &d->rt.state) != 0) {
            CHECK(0, "prefill the state log");
            break;
        }
    }
    pc_measure(&c);
    const pc_counts_t *n = &c.counts;
    CHECK(n->checkpoints >= 3u, "%s: a multi-block stream records several checkpoints (%u)", name,
          n->checkpoints);
    CHECK(n->compactions >= 1u, "%s: the state log must compact during the install", name);
    int before = test_failures;
    pc_cut_everywhere(&c, all_modes);
    CHECK(n->resumed_mid_download > 0u, "%s: some cut left a download to resume past its start", name);
    printf("power-cut campaign %s: sector %u, chunk %u: %u cut points x %s tear modes = %u runs (+%u cuts "
           "during resumes, +%u during boots), %u checkpoint records, %u state-log compactions, %u reboots "
           "resumed mid-download; %s\n",
           name, d->sector_size, chunk, n->cut_points, all_modes ? "4" : "1 of 4", n->runs, n->resume_cuts,
           n->boot_cuts, n->checkpoints, n->compactions, n->resumed_mid_download,
           test_failures == before ? "invariant held" : "FAILED");
    uint32_t points = n->cut_points;
    pc_close(&c);
    return points;
}

int main(void)
{
    uint32_t points = 0;
    points += prv_campaign("delta_good.tfpkg", 256, 8, 1, 0);
    points += prv_campaign("delta_good.tfpkg", 0, 16, 1, 2);
    points += prv_campaign("compressed_good.tfpkg", 256, 96, 0, 0);
    /* the same update in delta format version 2 (weight runs: resumes land between runs and mid-tensor) */
    points += prv_campaign("delta_v2_good.tfpkg", 256, 8, 1, 0);
    points += prv_campaign("compressed_v2_good.tfpkg", 256, 96, 0, 2);
    /* and in format version 3 (table runs: cuts land while a run's table or its symbols are decoded) */
    points += prv_campaign("delta_v3_good.tfpkg", 256, 8, 1, 0);
    /* and in format version 4 (literal runs: a block's later runs reuse the table of its first) */
    points += prv_campaign("delta_v4_good.tfpkg", 256, 8, 1, 0);
    /* and in format version 5 (ladder numbers: the checkpoint's has_base carries bit 4 across reboots) */
    points += prv_campaign("delta_v5_good.tfpkg", 256, 8, 1, 0);
    /* and in format version 6 (adaptive frequency symbols: checkpoint bit 5; counts rebuilt at each block) */
    points += prv_campaign("delta_v6_good.tfpkg", 256, 8, 1, 0);
    if (test_failures != 0) {
        fprintf(stderr, "test_powercut_delta: %d checks failed\n", test_failures);
        return 1;
    }
    printf("test_powercut_delta: ok, %u cut points in all\n", points);
    return 0;
}
