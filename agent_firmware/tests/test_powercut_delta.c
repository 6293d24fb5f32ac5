/* Power-cut campaign over compressed and delta installs (test_powercut.c does the same for raw ones).
 * A device runs good_active.tfpkg (sequence 5, confirmed; its model is the delta's base) and installs
 * delta_good.tfpkg or compressed_good.tfpkg (sequence 6, model_update.tflite, 1 KiB blocks) in small
 * chunks: begin, chunks, end, activate, selftest, confirm. The reference run counts its flash
 * program/erase operations; then for every cut index k in 1..N and every tear mode the power goes during
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

#include "tv_support.h"

#define OLD_SEQ 5u
#define NEW_SEQ 6u

static const tfa_cut_mode_t g_modes[] = {TFA_CUT_NOTHING, TFA_CUT_HALF, TFA_CUT_GARBAGE, TFA_CUT_COMPLETE};
#define MODE_COUNT (sizeof(g_modes) / sizeof(g_modes[0]))

static tfa_delta_t g_workspace;

typedef struct prv_campaign {
    tv_device_t *dev;
    uint8_t *snapshot;      /* flash image with the old model confirmed */
    const uint8_t *pkg;
    uint32_t pkg_len;
    const uint8_t *update;  /* model_update.tflite */
    uint32_t update_len;
    uint32_t chunk;
    uint32_t chunk_count;
} prv_campaign_t;

static uint32_t g_boot_cuts;
static uint32_t g_resumed_mid_download;

static uint32_t prv_payload(const prv_campaign_t *c)
{
    return c->pkg_len - TFA_MANIFEST_SIZE;
}

static uint32_t prv_step_count(const prv_campaign_t *c)
{
    return c->chunk_count + 5u; /* begin, chunks, end, activate, selftest, confirm */
}

static int prv_step(prv_campaign_t *c, uint32_t i)
{
    tfa_runtime_t *rt = &c->dev->rt;
    if (i == 0u) {
        return tfa_install_begin(rt, c->pkg, TFA_MANIFEST_SIZE);
    }
    if (i <= c->chunk_count) {
        uint32_t off = (i - 1u) * c->chunk;
        uint32_t n = prv_payload(c) - off < c->chunk ? prv_payload(c) - off : c->chunk;
        return tfa_install_chunk(rt, off, c->pkg + TFA_MANIFEST_SIZE + off, n);
    }
    switch (i - c->chunk_count) {
    case 1: return tfa_install_end(rt);
    case 2: return tfa_activate(rt);
    case 3: return tfa_selftest(rt);
    default: return tfa_confirm(rt);
    }
}

static void prv_restore(prv_campaign_t *c)
{
    tv_device_t *d = c->dev;
    tfa_flash_host_power_on(&d->fh);
    memcpy(d->fh.mem, c->snapshot, d->fh.flash.size);
}

static int prv_base_slot_intact(const prv_campaign_t *c)
{
    const tv_device_t *d = c->dev;
    uint32_t at = 2u * d->fh.flash.sector_size; /* slot 0 holds the base model */
    return memcmp(d->fh.mem + at, c->snapshot + at, d->cfg.slot_size) == 0;
}

static int prv_check_invariant(prv_campaign_t *c, int confirmed, const char *what, uint32_t k, int mode,
                               int cut_boot)
{
    tv_device_t *d = c->dev;
    int before = tv_failures;
    if (cut_boot) {
        tfa_flash_host_cut_after(&d->fh, 1, g_modes[mode], k + 77u);
        int boot_rc = tv_device_boot(d);
        if (tfa_flash_host_is_off(&d->fh)) {
            g_boot_cuts++;
            TV_CHECK(boot_rc != 0, "a boot that lost power reports it");
        }
        tfa_flash_host_power_on(&d->fh);
    }
    int rc = tv_device_boot(d);
    TV_CHECK_RC(rc, 0, what);
    if (rc != 0) {
        return -1;
    }
    tfa_status_t st;
    tfa_runtime_status(&d->rt, &st);
    tfa_state_log_t log;
    tfa_state_t loaded;
    TV_CHECK_RC(tfa_state_load(&log, &d->fh.flash, 0, &loaded), 0, "state area parses");
    TV_CHECK(st.last_error != TFA_ERR_STATE_CORRUPT, "%s k=%u mode=%d: state corrupt", what, k, mode);
    uint32_t seq = 0;
    TV_CHECK_RC(tv_check_active_model(d, &seq), 0, "active model complete and authentic");
    TV_CHECK(seq == OLD_SEQ || seq == NEW_SEQ, "%s k=%u mode=%d: active sequence %u", what, k, mode, seq);
    TV_CHECK(st.slots[0].valid && st.slots[0].manifest.sequence == OLD_SEQ, "%s k=%u mode=%d: old model lost",
             what, k, mode);
    TV_CHECK(prv_base_slot_intact(c), "%s k=%u mode=%d: the base slot changed", what, k, mode);
    if (confirmed) {
        TV_CHECK(seq == NEW_SEQ && st.phase == TFA_PHASE_IDLE, "%s k=%u mode=%d: confirmed model lost", what, k,
                 mode);
    }
    if (st.phase == TFA_PHASE_TRIAL) {
        TV_CHECK(seq == NEW_SEQ, "%s k=%u mode=%d: trial of the old model", what, k, mode);
    }
    if (st.phase == TFA_PHASE_DOWNLOADING) {
        TV_CHECK(st.download_offset == d->rt.state.download_offset && st.download_offset <= prv_payload(c),
                 "%s k=%u mode=%d: resume offset %u, record %u", what, k, mode, st.download_offset,
                 d->rt.state.download_offset);
        g_resumed_mid_download += st.download_offset > 0u;
    }
    return tv_failures == before ? 0 : -1;
}

/* Drive the install to completion from whatever state the reboot left. */
static int prv_resume(prv_campaign_t *c)
{
    tv_device_t *d = c->dev;
    tfa_runtime_t *rt = &d->rt;
    tfa_status_t st;
    tfa_runtime_status(rt, &st);
    int rc = 0;
    switch (st.phase) {
    case TFA_PHASE_DOWNLOADING: {
        rc = tfa_install_begin(rt, c->pkg, c->pkg_len); /* same manifest: resumes */
        tfa_runtime_status(rt, &st);
        uint32_t payload = prv_payload(c);
        for (uint32_t off = st.download_offset; rc == 0 && off < payload; off += c->chunk) {
            uint32_t n = payload - off < c->chunk ? payload - off : c->chunk;
            rc = tfa_install_chunk(rt, off, c->pkg + TFA_MANIFEST_SIZE + off, n);
        }
        if (rc == 0) {
            rc = tfa_install_end(rt);
        }
    }
        /* fall through */
    case TFA_PHASE_DOWNLOADED:
        if (rc == 0) {
            rc = tfa_activate(rt);
        }
        /* fall through */
    case TFA_PHASE_TRIAL:
        if (rc == 0) {
            rc = tfa_selftest(rt);
        }
        if (rc == 0) {
            rc = tfa_confirm(rt);
        }
        break;
    default: {
        uint32_t seq = 0;
        if (tv_check_active_model(d, &seq) == 0 && seq == NEW_SEQ) {
            return 0; /* already confirmed */
        }
        rc = tv_install_confirm(rt, c->pkg, c->pkg_len, c->chunk);
    }
    }
    return rc;
}

static void prv_check_final(prv_campaign_t *c, uint32_t k, int mode)
{
    tv_device_t *d = c->dev;
    for (int pass = 0; pass < 2; pass++) {
        tfa_status_t st;
        tfa_runtime_status(&d->rt, &st);
        uint32_t seq = 0;
        uint32_t len = 0;
        TV_CHECK_RC(tv_check_active_model(d, &seq), 0, "final model");
        const uint8_t *model = tfa_active_model(&d->rt, &len);
        TV_CHECK(seq == NEW_SEQ && st.phase == TFA_PHASE_IDLE && st.security_floor == 3 && st.slots[0].valid &&
                     st.slots[1].valid && len == c->update_len && memcmp(model, c->update, len) == 0,
                 "k=%u mode=%d: final seq %u phase %u", k, mode, seq, st.phase);
        TV_CHECK(prv_base_slot_intact(c), "k=%u mode=%d: the base slot changed", k, mode);
        TV_CHECK_RC(tv_device_boot(d), 0, "final reboot");
    }
}

static void prv_run(prv_campaign_t *c, uint32_t k, int mode_index, uint32_t *resume_cuts)
{
    tv_device_t *d = c->dev;
    prv_restore(c);
    TV_CHECK_RC(tv_device_boot(d), 0, "boot from snapshot");
    tfa_flash_host_cut_after(&d->fh, k, g_modes[mode_index], 0xC0FFEEu + k * 17u + (uint32_t)mode_index);
    int confirmed = 0;
    uint32_t steps = prv_step_count(c);
    for (uint32_t i = 0; i < steps; i++) {
        if (prv_step(c, i) != 0) {
            break;
        }
        confirmed = i + 1u == steps;
    }
    TV_CHECK(tfa_flash_host_is_off(&d->fh), "k=%u: the cut happened", k);
    tfa_flash_host_power_on(&d->fh);
    if (prv_check_invariant(c, confirmed, "after cut", k, mode_index, (k + (uint32_t)mode_index) % 2u == 1u) != 0) {
        return;
    }
    if ((k + (uint32_t)mode_index) % 2u == 0u) {
        uint32_t second = 1u + (k * 5u + (uint32_t)mode_index) % 13u;
        tfa_flash_host_cut_after(&d->fh, second, g_modes[(mode_index + 1) % (int)MODE_COUNT], k);
        int rc = prv_resume(c);
        int was_cut = tfa_flash_host_is_off(&d->fh);
        tfa_flash_host_power_on(&d->fh);
        if (was_cut) {
            (*resume_cuts)++;
            if (prv_check_invariant(c, 0, "after a cut in the resume", k, mode_index, 0) != 0) {
                return;
            }
        } else {
            TV_CHECK_RC(rc, 0, "resume without a cut");
        }
    }
    TV_CHECK_RC(prv_resume(c), 0, "resume");
    prv_check_final(c, k, mode_index);
}

/* Returns the number of cut points (flash operations of the install). all_modes 0: one tear mode per cut
 * point, in turn (for the long compressed stream). room > 0: the state log is first filled until only
 * room record positions are left in its sector, so that it compacts in the middle of the install. */
static uint32_t prv_campaign(const char *name, uint32_t sector, uint32_t chunk, int all_modes, uint32_t room)
{
    prv_campaign_t c;
    memset(&c, 0, sizeof(c));
    c.dev = calloc(1, sizeof(*c.dev));
    uint32_t len = 0;
    uint32_t update_len = 0;
    uint8_t *pkg = tv_read_vector(name, &len);
    uint8_t *update = tv_read_vector("model_update.tflite", &update_len);
    if (c.dev == NULL || pkg == NULL || update == NULL || len <= TFA_MANIFEST_SIZE ||
        tv_device_init(c.dev, sector) != 0) {
        fprintf(stderr, "test_powercut_delta: cannot set up (vectors in %s)\n", tv_vector_dir());
        free(pkg);
        free(update);
        free(c.dev);
        tv_failures++;
        return 0;
    }
    tv_device_t *d = c.dev;
    d->cfg.max_trial_boots = 2;
    d->cfg.delta_workspace = &g_workspace;
    c.pkg = pkg;
    c.pkg_len = len;
    c.update = update;
    c.update_len = update_len;
    c.chunk = chunk;
    c.chunk_count = (prv_payload(&c) + chunk - 1u) / chunk;
    TV_CHECK_RC(tv_device_boot(d), 0, "boot");
    TV_CHECK_RC(tv_install_vector(&d->rt, "good_active.tfpkg", 512), 0, "base model");
    uint32_t per_sector = d->fh.flash.sector_size / TFA_STATE_RECORD_SIZE;
    while (room > 0u && d->rt.log.next_index + room < per_sector) {
        if (tfa_state_save(&d->rt.log, &d->rt.state) != 0) {
            TV_CHECK(0, "prefill the state log");
            break;
        }
    }
    c.snapshot = malloc(d->fh.flash.size);
    memcpy(c.snapshot, d->fh.mem, d->fh.flash.size);

    /* Reference run: flash operations, state-log compactions and checkpoint records. */
    prv_restore(&c);
    TV_CHECK_RC(tv_device_boot(d), 0, "boot");
    uint32_t ops0 = tfa_flash_host_op_count(&d->fh);
    uint32_t switches = 0;
    uint32_t checkpoints = 0;
    uint8_t sector_now = d->rt.log.sector;
    for (uint32_t i = 0; i < prv_step_count(&c); i++) {
        uint32_t seq = d->rt.log.seq;
        TV_CHECK_RC(prv_step(&c, i), 0, "reference step");
        checkpoints += i >= 1u && i <= c.chunk_count ? d->rt.log.seq - seq : 0u;
        switches += d->rt.log.sector != sector_now;
        sector_now = d->rt.log.sector;
    }
    uint32_t total_ops = tfa_flash_host_op_count(&d->fh) - ops0;
    TV_CHECK(checkpoints >= 3u, "%s: a multi-block stream records several checkpoints (%u)", name, checkpoints);
    TV_CHECK(switches >= 1u, "%s: the state log must compact during the install", name);

    uint32_t runs = 0;
    uint32_t resume_cuts = 0;
    g_boot_cuts = 0;
    g_resumed_mid_download = 0;
    int before = tv_failures;
    for (uint32_t k = 1; k <= total_ops && tv_failures - before < 20; k++) {
        for (int m = 0; m < (int)MODE_COUNT; m++) {
            if (all_modes || (uint32_t)m == k % MODE_COUNT) {
                prv_run(&c, k, m, &resume_cuts);
                runs++;
            }
        }
    }
    TV_CHECK(g_resumed_mid_download > 0u, "%s: some cut left a download to resume past its start", name);
    printf("power-cut campaign %s: sector %u, chunk %u: %u cut points x %s tear modes = %u runs (+%u cuts "
           "during resumes, +%u during boots), %u checkpoint records, %u state-log compactions, %u reboots "
           "resumed mid-download; %s\n",
           name, d->sector_size, chunk, total_ops, all_modes ? "4" : "1 of 4", runs, resume_cuts, g_boot_cuts, checkpoints,
           switches, g_resumed_mid_download, tv_failures == before ? "invariant held" : "FAILED");
    free(c.snapshot);
    free(pkg);
    free(update);
    tv_device_free(d);
    free(d);
    return total_ops;
}

int main(void)
{
    uint32_t points = 0;
    points += prv_campaign("delta_good.tfpkg", 256, 8, 1, 0);
    points += prv_campaign("delta_good.tfpkg", 0, 16, 1, 2);
    points += prv_campaign("compressed_good.tfpkg", 256, 96, 0, 0);
    if (tv_failures != 0) {
        fprintf(stderr, "test_powercut_delta: %d checks failed\n", tv_failures);
        return 1;
    }
    printf("test_powercut_delta: ok, %u cut points in all\n", points);
    return 0;
}
