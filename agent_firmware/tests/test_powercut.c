/* Power-cut campaign. A device runs good_active.tfpkg (sequence 5, confirmed) and installs good.tfpkg
 * (sequence 6): begin, chunks, end, activate, selftest, confirm. The reference run counts its flash
 * program/erase operations; then for every cut index k in 1..N and every tear mode (nothing applied,
 * half applied, garbage, complete) the flash loses power during operation k. After power-on and reboot:
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

#include "tv_support.h"

#define OLD_SEQ 5u
#define NEW_SEQ 6u

static const tfa_cut_mode_t g_modes[] = {TFA_CUT_NOTHING, TFA_CUT_HALF, TFA_CUT_GARBAGE, TFA_CUT_COMPLETE};
#define MODE_COUNT (sizeof(g_modes) / sizeof(g_modes[0]))

typedef struct prv_campaign {
    tv_device_t *dev;
    uint8_t *snapshot;     /* flash image with the old model confirmed */
    const uint8_t *pkg;
    uint32_t pkg_len;
    uint32_t chunk;
    uint32_t chunk_count;
    int fresh;             /* 1: first install on an empty device (no old model) */
} prv_campaign_t;

static uint32_t prv_step_count(const prv_campaign_t *c)
{
    return c->chunk_count + 5u; /* begin, chunks, end, activate, selftest, confirm */
}

/* Step i of the install scenario. */
static int prv_step(prv_campaign_t *c, uint32_t i)
{
    tfa_runtime_t *rt = &c->dev->rt;
    uint32_t payload = c->pkg_len - TFA_MANIFEST_SIZE;
    if (i == 0u) {
        return tfa_install_begin(rt, c->pkg, TFA_MANIFEST_SIZE);
    }
    if (i <= c->chunk_count) {
        uint32_t off = (i - 1u) * c->chunk;
        uint32_t n = payload - off < c->chunk ? payload - off : c->chunk;
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

static uint32_t g_boot_cuts;

/* The invariant after a power cut and reboot. cut_boot: the power also fails during the boot's own
 * first flash operation if it has one (a trial boot count, a dropped download), then comes back. */
static int prv_check_invariant(prv_campaign_t *c, int confirmed, const char *what, uint32_t k, int mode,
                               int cut_boot)
{
    tv_device_t *d = c->dev;
    int before = tv_failures;
    if (cut_boot) {
        tfa_flash_host_cut_after(&d->fh, 1, g_modes[mode], k + 99u);
        int boot_rc = tv_device_boot(d);
        if (tfa_flash_host_is_off(&d->fh)) {
            g_boot_cuts++;
            TV_CHECK(boot_rc != 0, "a boot that lost power reports it");
        }
        tfa_flash_host_power_on(&d->fh); /* also disarms a cut that did not happen */
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
    uint32_t seq = 0;
    if (c->fresh) {
        /* The very first record torn reads as STATE_CORRUPT and boots fresh, which is what it was. */
        int none = st.active_slot == 0xFF;
        if (!none) {
            TV_CHECK_RC(tv_check_active_model(d, &seq), 0, "active model complete and authentic");
        }
        TV_CHECK(none || seq == NEW_SEQ, "%s k=%u mode=%d: active sequence %u", what, k, mode, seq);
    } else {
        TV_CHECK(st.last_error != TFA_ERR_STATE_CORRUPT, "%s k=%u mode=%d: state corrupt", what, k, mode);
        TV_CHECK_RC(tv_check_active_model(d, &seq), 0, "active model complete and authentic");
        TV_CHECK(seq == OLD_SEQ || seq == NEW_SEQ, "%s k=%u mode=%d: active sequence %u", what, k, mode, seq);
        TV_CHECK(st.slots[0].valid && st.slots[0].manifest.sequence == OLD_SEQ,
                 "%s k=%u mode=%d: old model lost", what, k, mode);
    }
    if (confirmed) {
        TV_CHECK(seq == NEW_SEQ && st.phase == TFA_PHASE_IDLE, "%s k=%u mode=%d: confirmed model lost (seq %u phase %u)",
                 what, k, mode, seq, st.phase);
    }
    if (st.phase == TFA_PHASE_TRIAL) {
        TV_CHECK(seq == NEW_SEQ, "%s k=%u mode=%d: trial of the old model", what, k, mode);
    }
    return tv_failures == before ? 0 : -1;
}

/* Drive the install to completion from whatever state the reboot left. Returns the first error. */
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
        uint32_t payload = c->pkg_len - TFA_MANIFEST_SIZE;
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
        TV_CHECK_RC(tv_check_active_model(d, &seq), 0, "final model");
        TV_CHECK(seq == NEW_SEQ && st.phase == TFA_PHASE_IDLE && st.security_floor == 3 &&
                     st.slots[0].valid && (c->fresh || st.slots[1].valid),
                 "k=%u mode=%d: final seq %u phase %u", k, mode, seq, st.phase);
        TV_CHECK_RC(tv_device_boot(d), 0, "final reboot");
    }
}

/* One run: cut at operation k, reboot, check, resume (maybe cut again), check the end state. */
static void prv_run(prv_campaign_t *c, uint32_t k, int mode_index, uint32_t *resume_cuts)
{
    tv_device_t *d = c->dev;
    tfa_cut_mode_t mode = g_modes[mode_index];
    prv_restore(c);
    TV_CHECK_RC(tv_device_boot(d), 0, "boot from snapshot");
    tfa_flash_host_cut_after(&d->fh, k, mode, 0x1234567u + k * 31u + (uint32_t)mode_index);
    int confirmed = 0;
    uint32_t steps = prv_step_count(c);
    for (uint32_t i = 0; i < steps; i++) {
        int rc = prv_step(c, i);
        if (rc != 0) {
            break;
        }
        if (i + 1u == steps) {
            confirmed = 1;
        }
    }
    TV_CHECK(tfa_flash_host_is_off(&d->fh), "k=%u: the cut happened", k);
    tfa_flash_host_power_on(&d->fh);
    if (prv_check_invariant(c, confirmed, "after cut", k, mode_index, mode_index == 1 || mode_index == 2) != 0) {
        return;
    }
    /* Every other run: lose power again somewhere in the resume. */
    if ((k + (uint32_t)mode_index) % 2u == 0u) {
        uint32_t second = 1u + (k * 7u + (uint32_t)mode_index) % 9u;
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

/* prefill: extra copies of the current state record appended before the snapshot, to place a log
 * compaction in the middle of the install. */
static int prv_campaign(const char *name, uint32_t sector, uint32_t chunk, int fresh, uint32_t prefill)
{
    prv_campaign_t c;
    memset(&c, 0, sizeof(c));
    c.dev = calloc(1, sizeof(*c.dev));
    uint32_t len = 0;
    uint8_t *pkg = tv_read_vector("good.tfpkg", &len);
    if (c.dev == NULL || pkg == NULL || len <= TFA_MANIFEST_SIZE || tv_device_init(c.dev, sector) != 0) {
        fprintf(stderr, "test_powercut: cannot set up (vectors in %s)\n", tv_vector_dir());
        free(pkg);
        free(c.dev);
        tv_failures++;
        return 0;
    }
    tv_device_t *d = c.dev;
    d->cfg.max_trial_boots = 2;
    c.pkg = pkg;
    c.pkg_len = len;
    c.chunk = chunk;
    c.fresh = fresh;
    c.chunk_count = (len - TFA_MANIFEST_SIZE + chunk - 1u) / chunk;
    TV_CHECK_RC(tv_device_boot(d), 0, "boot");
    if (!fresh) {
        TV_CHECK_RC(tv_install_vector(&d->rt, "good_active.tfpkg", chunk), 0, "previous model");
    }
    for (uint32_t i = 0; i < prefill; i++) {
        TV_CHECK_RC(tfa_state_save(&d->rt.log, &d->rt.state), 0, "prefill the state log");
    }
    c.snapshot = malloc(d->fh.flash.size);
    memcpy(c.snapshot, d->fh.mem, d->fh.flash.size);

    /* Reference run: count operations and state-log sector switches (compactions). */
    prv_restore(&c);
    TV_CHECK_RC(tv_device_boot(d), 0, "boot");
    uint32_t ops0 = tfa_flash_host_op_count(&d->fh);
    uint32_t switches = 0;
    uint8_t sector_now = d->rt.log.sector;
    for (uint32_t i = 0; i < prv_step_count(&c); i++) {
        TV_CHECK_RC(prv_step(&c, i), 0, "reference step");
        switches += d->rt.log.sector != sector_now;
        sector_now = d->rt.log.sector;
    }
    uint32_t total_ops = tfa_flash_host_op_count(&d->fh) - ops0;

    uint32_t runs = 0;
    uint32_t resume_cuts = 0;
    g_boot_cuts = 0;
    int before = tv_failures;
    for (uint32_t k = 1; k <= total_ops && tv_failures - before < 20; k++) {
        for (int m = 0; m < (int)MODE_COUNT; m++) {
            prv_run(&c, k, m, &resume_cuts);
            runs++;
        }
    }
    printf("power-cut campaign %s: sector %u, chunk %u: %u cut points x %zu tear modes = %u runs "
           "(+%u cuts during resumes, +%u during boots), %u state-log compactions in the install; %s\n",
           name, d->sector_size, chunk, total_ops, MODE_COUNT, runs, resume_cuts, g_boot_cuts, switches,
           tv_failures == before ? "invariant held" : "FAILED");
    free(c.snapshot);
    free(pkg);
    tv_device_free(d);
    free(d);
    return (int)switches;
}

int main(void)
{
    prv_campaign("device.txt geometry", 0, 512, 0, 0);
    int compactions = prv_campaign("device.txt geometry, state log nearly full", 0, 512, 0, 75);
    TV_CHECK(compactions >= 1, "the nearly-full log must compact during the install (%d)", compactions);
    compactions = prv_campaign("small sectors", 256, 128, 0, 0);
    TV_CHECK(compactions >= 2, "the small-sector campaign must compact the state log (%d)", compactions);
    prv_campaign("first install on an empty device", 256, 256, 1, 0);
    if (tv_failures != 0) {
        fprintf(stderr, "test_powercut: %d checks failed\n", tv_failures);
        return 1;
    }
    printf("test_powercut: ok\n");
    return 0;
}
