/* Power-cut campaign over raw installs (the driver, with the invariant it checks after every cut, is
 * tests/support/powercut_campaign.c). A device runs good_active.tfpkg (sequence 5, confirmed) and installs
 * good.tfpkg (sequence 6): begin, chunks, end, activate, selftest, confirm. For every cut index k in 1..N
 * and every tear mode (nothing applied, half applied, garbage, complete) the flash loses power during
 * operation k; after power-on and reboot (in the HALF and GARBAGE runs with a second cut during the boot):
 *   - the state area parses (boot succeeds, no STATE_CORRUPT, tfa_state_load agrees),
 *   - the active model is complete: its manifest authenticates and its bytes hash to model_sha256,
 *   - it is the old (5) or the new (6) model, the old one is still valid in its slot,
 *   - a new model whose confirm returned 0 stays active and confirmed.
 * Then the install is resumed (with a second power cut during the resume in half of the runs) until it
 * completes; the end state must be the new model confirmed, floor 3, old model kept for rollback.
 * The campaign runs with 4 KiB sectors (device.txt), again with the state log nearly full so that it
 * compacts in the middle of the install, with 256-byte sectors where the log (5 records per sector)
 * compacts several times, so compactions are cut too, and as a first install on an empty device. */
#include <stdlib.h>
#include <string.h>

#include "powercut_campaign.h"

/* prefill: extra copies of the current state record appended before the snapshot, to place a log
 * compaction in the middle of the install. Returns the compactions of the install. */
static int prv_campaign(const char *name, uint32_t sector, uint32_t chunk, int fresh, uint32_t prefill)
{
    const pc_config_t cfg = {
        .package = "good.tfpkg",
        .sector = sector,
        .chunk = chunk,
        .old_model_chunk = chunk,
        .fresh = fresh,
        .schedule = {.seed_base = 0x1234567u, .seed_step = 31u, .boot_seed_offset = 99u, .resume_step = 7u,
                     .resume_span = 9u},
    };
    pc_campaign_t c;
    if (pc_open(&c, &cfg) != 0) {
        return 0;
    }
    for (uint32_t i = 0; i < prefill; i++) {
        CHECK_RC(tfa_state_save(&c.dev->rt.log, &c.dev->rt.state), 0, "prefill the state log");
    }
    pc_measure(&c);
    int held = pc_cut_everywhere(&c, 1);
    const pc_counts_t *n = &c.counts;
    printf("power-cut campaign %s: sector %u, chunk %u: %u cut points x %u tear modes = %u runs "
           "(+%u cuts during resumes, +%u during boots), %u state-log compactions in the install; %s\n",
           name, c.dev->sector_size, chunk, n->cut_points, PC_MODE_COUNT, n->runs, n->resume_cuts,
           n->boot_cuts, n->compactions, held ? "invariant held" : "FAILED");
    int compactions = (int)n->compactions;
    pc_close(&c);
    return compactions;
}

int main(void)
{
    prv_campaign("device.txt geometry", 0, 512, 0, 0);
    int compactions = prv_campaign("device.txt geometry, state log nearly full", 0, 512, 0, 75);
    CHECK(compactions >= 1, "the nearly-full log must compact during the install (%d)", compactions);
    compactions = prv_campaign("small sectors", 256, 128, 0, 0);
    CHECK(compactions >= 2, "the small-sector campaign must compact the state log (%d)", compactions);
    prv_campaign("first install on an empty device", 256, 256, 1, 0);
    return test_report("test_powercut");
}
