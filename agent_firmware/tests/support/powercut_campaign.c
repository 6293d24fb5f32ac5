#include "powercut_campaign.h"

#include <stdlib.h>
#include <string.h>

#include "tfa/x25519.h"

static const tfa_cut_mode_t k_modes[PC_MODE_COUNT] = {TFA_CUT_NOTHING, TFA_CUT_HALF, TFA_CUT_GARBAGE,
                                                      TFA_CUT_COMPLETE};

static uint32_t prv_payload(const pc_campaign_t *c)
{
    return c->pkg_len - TFA_MANIFEST_SIZE;
}

/* begin (the same manifest again resumes), then the key wrap of an encrypted package: the runtime keeps
 * the content key in RAM only, so it comes again after every begin. */
static int prv_begin(pc_campaign_t *c, uint32_t len)
{
    tfa_runtime_t *rt = &c->dev->rt;
    int rc = tfa_install_begin(rt, c->pkg, len);
    if (rc == 0 && c->wrap != NULL) {
        rc = tfa_install_key(rt, c->wrap);
    }
    return rc;
}

static uint32_t prv_step_count(const pc_campaign_t *c)
{
    return c->chunk_count + 5u; /* begin, chunks, end, activate, selftest, confirm */
}

/* Step i of the install scenario. */
static int prv_step(pc_campaign_t *c, uint32_t i)
{
    tfa_runtime_t *rt = &c->dev->rt;
    if (i == 0u) {
        return prv_begin(c, TFA_MANIFEST_SIZE);
    }
    if (i <= c->chunk_count) {
        uint32_t off = (i - 1u) * c->cfg.chunk;
        uint32_t n = prv_payload(c) - off < c->cfg.chunk ? prv_payload(c) - off : c->cfg.chunk;
        return tfa_install_chunk(rt, off, c->pkg + TFA_MANIFEST_SIZE + off, n);
    }
    switch (i - c->chunk_count) {
    case 1: return tfa_install_end(rt);
    case 2: return tfa_activate(rt);
    case 3: return tfa_selftest(rt);
    default: return tfa_confirm(rt);
    }
}

static void prv_restore(pc_campaign_t *c)
{
    tv_device_t *d = c->dev;
    tfa_flash_host_power_on(&d->fh);
    memcpy(d->fh.mem, c->snapshot, d->fh.flash.size);
}

static int prv_base_slot_intact(const pc_campaign_t *c)
{
    const tv_device_t *d = c->dev;
    uint32_t at = 2u * d->fh.flash.sector_size; /* slot 0 holds the base model */
    return memcmp(d->fh.mem + at, c->snapshot + at, d->cfg.slot_size) == 0;
}

/* The invariant after a power cut and reboot. cut_boot: the power also fails during the boot's own
 * first flash operation if it has one (a trial boot count, a dropped download), then comes back. */
static int prv_check_invariant(pc_campaign_t *c, int confirmed, const char *what, uint32_t k, int mode,
                               int cut_boot)
{
    tv_device_t *d = c->dev;
    int before = test_failures;
    if (cut_boot) {
        tfa_flash_host_cut_after(&d->fh, 1, k_modes[mode], k + c->cfg.schedule.boot_seed_offset);
        int boot_rc = tv_device_boot(d);
        if (tfa_flash_host_is_off(&d->fh)) {
            c->counts.boot_cuts++;
            CHECK(boot_rc != 0, "a boot that lost power reports it");
        }
        tfa_flash_host_power_on(&d->fh); /* also disarms a cut that did not happen */
    }
    int rc = tv_device_boot(d);
    CHECK_RC(rc, 0, what);
    if (rc != 0) {
        return -1;
    }
    tfa_status_t st;
    tfa_runtime_status(&d->rt, &st);
    tfa_state_log_t log;
    tfa_state_t loaded;
    CHECK_RC(tfa_state_load(&log, &d->fh.flash, 0, &loaded), 0, "state area parses");
    uint32_t seq = 0;
    if (c->cfg.fresh) {
        /* The very first record torn reads as STATE_CORRUPT and boots fresh, which is what it was. */
        int none = st.active_slot == 0xFF;
        if (!none) {
            CHECK_RC(tv_check_active_model(d, &seq), 0, "active model complete and authentic");
        }
        CHECK(none || seq == PC_NEW_SEQ, "%s k=%u mode=%d: active sequence %u", what, k, mode, seq);
    } else {
        CHECK(st.last_error != TFA_ERR_STATE_CORRUPT, "%s k=%u mode=%d: state corrupt", what, k, mode);
        CHECK_RC(tv_check_active_model(d, &seq), 0, "active model complete and authentic");
        CHECK(seq == PC_OLD_SEQ || seq == PC_NEW_SEQ, "%s k=%u mode=%d: active sequence %u", what, k, mode,
              seq);
        CHECK(st.slots[0].valid && st.slots[0].manifest.sequence == PC_OLD_SEQ,
              "%s k=%u mode=%d: old model lost", what, k, mode);
    }
    if (c->cfg.check_base_slot) {
        CHECK(prv_base_slot_intact(c), "%s k=%u mode=%d: the base slot changed", what, k, mode);
    }
    if (confirmed) {
        CHECK(seq == PC_NEW_SEQ && st.phase == TFA_PHASE_IDLE,
              "%s k=%u mode=%d: confirmed model lost (seq %u phase %u)", what, k, mode, seq, st.phase);
    }
    if (st.phase == TFA_PHASE_TRIAL) {
        CHECK(seq == PC_NEW_SEQ, "%s k=%u mode=%d: trial of the old model", what, k, mode);
    }
    if (st.phase == TFA_PHASE_DOWNLOADING) {
        if (c->cfg.check_resume_offset) {
            CHECK(st.download_offset == d->rt.state.download_offset && st.download_offset <= prv_payload(c),
                  "%s k=%u mode=%d: resume offset %u, record %u", what, k, mode, st.download_offset,
                  d->rt.state.download_offset);
        }
        c->counts.resumed_mid_download += st.download_offset > 0u;
    }
    return test_failures == before ? 0 : -1;
}

/* Drive the install to completion from whatever state the reboot left. Returns the first error. */
static int prv_resume(pc_campaign_t *c)
{
    tv_device_t *d = c->dev;
    tfa_runtime_t *rt = &d->rt;
    uint32_t chunk = c->cfg.chunk;
    tfa_status_t st;
    tfa_runtime_status(rt, &st);
    int rc = 0;
    switch (st.phase) {
    case TFA_PHASE_DOWNLOADING: {
        rc = prv_begin(c, c->pkg_len); /* same manifest: resumes */
        tfa_runtime_status(rt, &st);
        uint32_t payload = prv_payload(c);
        for (uint32_t off = st.download_offset; rc == 0 && off < payload; off += chunk) {
            uint32_t n = payload - off < chunk ? payload - off : chunk;
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
        if (tv_check_active_model(d, &seq) == 0 && seq == PC_NEW_SEQ) {
            return 0; /* already confirmed */
        }
        if (c->wrap == NULL) {
            rc = tv_install_confirm(rt, c->pkg, c->pkg_len, chunk);
            break;
        }
        rc = prv_begin(c, c->pkg_len);
        uint32_t payload = prv_payload(c);
        for (uint32_t off = 0; rc == 0 && off < payload; off += chunk) {
            uint32_t n = payload - off < chunk ? payload - off : chunk;
            rc = tfa_install_chunk(rt, off, c->pkg + TFA_MANIFEST_SIZE + off, n);
        }
        rc = rc != 0 ? rc : tfa_install_end(rt);
        rc = rc != 0 ? rc : tfa_activate(rt);
        rc = rc != 0 ? rc : tfa_selftest(rt);
        rc = rc != 0 ? rc : tfa_confirm(rt);
    }
    }
    return rc;
}

/* The end state, before and after one more reboot. */
static void prv_check_final(pc_campaign_t *c, uint32_t k, int mode)
{
    tv_device_t *d = c->dev;
    for (int pass = 0; pass < 2; pass++) {
        tfa_status_t st;
        tfa_runtime_status(&d->rt, &st);
        uint32_t seq = 0;
        CHECK_RC(tv_check_active_model(d, &seq), 0, "final model");
        CHECK(seq == PC_NEW_SEQ && st.phase == TFA_PHASE_IDLE && st.security_floor == 3 &&
                  st.slots[0].valid && (c->cfg.fresh || st.slots[1].valid),
              "k=%u mode=%d: final seq %u phase %u", k, mode, seq, st.phase);
        if (c->model != NULL) {
            uint32_t len = 0;
            const uint8_t *model = tfa_active_model(&d->rt, &len);
            CHECK(model != NULL && len == c->model_len && memcmp(model, c->model, len) == 0,
                  "k=%u mode=%d: final model is not %s (%u bytes)", k, mode, c->cfg.expect_model, len);
        }
        if (c->cfg.check_base_slot) {
            CHECK(prv_base_slot_intact(c), "k=%u mode=%d: the base slot changed", k, mode);
        }
        CHECK_RC(tv_device_boot(d), 0, "final reboot");
    }
}

/* One run: cut at operation k, reboot, check, resume (maybe cut again), check the end state. */
static void prv_run(pc_campaign_t *c, uint32_t k, int mode_index)
{
    tv_device_t *d = c->dev;
    const pc_schedule_t *s = &c->cfg.schedule;
    uint32_t odd_run = (k + (uint32_t)mode_index) % 2u;
    prv_restore(c);
    CHECK_RC(tv_device_boot(d), 0, "boot from snapshot");
    uint32_t seed = s->seed_base + k * s->seed_step + (uint32_t)mode_index;
    tfa_flash_host_cut_after(&d->fh, k, k_modes[mode_index], seed);
    int confirmed = 0;
    uint32_t steps = prv_step_count(c);
    for (uint32_t i = 0; i < steps; i++) {
        if (prv_step(c, i) != 0) {
            break;
        }
        confirmed = i + 1u == steps;
    }
    CHECK(tfa_flash_host_is_off(&d->fh), "k=%u: the cut happened", k);
    tfa_flash_host_power_on(&d->fh);
    int cut_boot = s->boot_cut_on_odd_runs ? odd_run == 1u : (mode_index == 1 || mode_index == 2);
    if (prv_check_invariant(c, confirmed, "after cut", k, mode_index, cut_boot) != 0) {
        return;
    }
    /* Every other run: lose power again somewhere in the resume. */
    if (odd_run == 0u) {
        uint32_t second = 1u + (k * s->resume_step + (uint32_t)mode_index) % s->resume_span;
        tfa_flash_host_cut_after(&d->fh, second, k_modes[((uint32_t)mode_index + 1u) % PC_MODE_COUNT], k);
        int rc = prv_resume(c);
        int was_cut = tfa_flash_host_is_off(&d->fh);
        tfa_flash_host_power_on(&d->fh);
        if (was_cut) {
            c->counts.resume_cuts++;
            if (prv_check_invariant(c, 0, "after a cut in the resume", k, mode_index, 0) != 0) {
                return;
            }
        } else {
            CHECK_RC(rc, 0, "resume without a cut");
        }
    }
    CHECK_RC(prv_resume(c), 0, "resume");
    prv_check_final(c, k, mode_index);
}

/* encrypted/good_active.tfpkg with cfg->old_wrap: begin, key, chunks, end, activate, selftest, confirm. */
static int prv_install_encrypted_old(tv_device_t *d, const pc_config_t *cfg)
{
    uint32_t len = 0;
    uint32_t wrap_len = 0;
    uint8_t *pkg = tv_read_vector("encrypted/good_active.tfpkg", &len);
    uint8_t *wrap = tv_read_vector(cfg->old_wrap, &wrap_len);
    tfa_runtime_t *rt = &d->rt;
    int rc = pkg != NULL && wrap != NULL && wrap_len == TFA_KEY_WRAP_SIZE ? 0 : -TFA_ERR_TRUNCATED;
    rc = rc != 0 ? rc : tfa_install_begin(rt, pkg, len);
    rc = rc != 0 ? rc : tfa_install_key(rt, wrap);
    for (uint32_t off = 0; rc == 0 && off < len - TFA_MANIFEST_SIZE; off += cfg->old_model_chunk) {
        uint32_t n = len - TFA_MANIFEST_SIZE - off;
        n = n < cfg->old_model_chunk ? n : cfg->old_model_chunk;
        rc = tfa_install_chunk(rt, off, pkg + TFA_MANIFEST_SIZE + off, n);
    }
    rc = rc != 0 ? rc : tfa_install_end(rt);
    rc = rc != 0 ? rc : tfa_activate(rt);
    rc = rc != 0 ? rc : tfa_selftest(rt);
    rc = rc != 0 ? rc : tfa_confirm(rt);
    free(pkg);
    free(wrap);
    return rc;
}

int pc_open(pc_campaign_t *c, const pc_config_t *cfg)
{
    memset(c, 0, sizeof(*c));
    c->cfg = *cfg;
    c->dev = calloc(1, sizeof(*c->dev));
    c->pkg = tv_read_vector(cfg->package, &c->pkg_len);
    if (cfg->expect_model != NULL) {
        c->model = tv_read_vector(cfg->expect_model, &c->model_len);
    }
    if (c->dev == NULL || c->pkg == NULL || c->pkg_len <= TFA_MANIFEST_SIZE ||
        (cfg->expect_model != NULL && c->model == NULL) || tv_device_init(c->dev, cfg->sector) != 0) {
        fprintf(stderr, "power-cut campaign: cannot set up %s (vectors in %s)\n", cfg->package,
                tv_vector_dir());
        free(c->pkg);
        free(c->model);
        free(c->dev);
        test_failures++;
        return -1;
    }
    tv_device_t *d = c->dev;
    d->cfg.max_trial_boots = 2;
    d->cfg.delta_workspace = cfg->workspace;
    if (cfg->wrap != NULL) {
        uint32_t wrap_len = 0;
        uint32_t key_len = 0;
        c->wrap = tv_read_vector(cfg->wrap, &wrap_len);
        uint8_t *key = tv_read_vector(cfg->device_key, &key_len);
        CHECK(c->wrap != NULL && wrap_len == TFA_KEY_WRAP_SIZE && key != NULL && key_len == 32u,
              "encrypted campaign vectors %s, %s", cfg->wrap, cfg->device_key);
        if (key != NULL && key_len == 32u) {
            memcpy(c->enc_private, key, 32);
            tfa_x25519_base(c->enc_public, c->enc_private);
            d->cfg.encryption_private = c->enc_private;
            d->cfg.encryption_public = c->enc_public;
        }
        free(key);
    }
    c->chunk_count = (prv_payload(c) + cfg->chunk - 1u) / cfg->chunk;
    CHECK_RC(tv_device_boot(d), 0, "boot");
    if (!cfg->fresh && cfg->old_wrap == NULL) {
        CHECK_RC(tv_install_vector(&d->rt, "good_active.tfpkg", cfg->old_model_chunk), 0, "old model");
    } else if (!cfg->fresh) {
        CHECK_RC(prv_install_encrypted_old(d, cfg), 0, "old model, encrypted");
    }
    return 0;
}

void pc_measure(pc_campaign_t *c)
{
    tv_device_t *d = c->dev;
    c->snapshot = malloc(d->fh.flash.size);
    if (c->snapshot == NULL) {
        fprintf(stderr, "power-cut campaign: out of memory\n");
        exit(1);
    }
    memcpy(c->snapshot, d->fh.mem, d->fh.flash.size);

    prv_restore(c);
    CHECK_RC(tv_device_boot(d), 0, "boot");
    uint32_t ops0 = tfa_flash_host_op_count(&d->fh);
    uint8_t sector_now = d->rt.log.sector;
    for (uint32_t i = 0; i < prv_step_count(c); i++) {
        uint32_t seq = d->rt.log.seq;
        CHECK_RC(prv_step(c, i), 0, "reference step");
        c->counts.checkpoints += i >= 1u && i <= c->chunk_count ? d->rt.log.seq - seq : 0u;
        c->counts.compactions += d->rt.log.sector != sector_now;
        sector_now = d->rt.log.sector;
    }
    c->counts.cut_points = tfa_flash_host_op_count(&d->fh) - ops0;
}

int pc_cut_everywhere(pc_campaign_t *c, int all_modes)
{
    int before = test_failures;
    for (uint32_t k = 1; k <= c->counts.cut_points && test_failures - before < 20; k++) {
        for (uint32_t m = 0; m < PC_MODE_COUNT; m++) {
            if (all_modes || m == k % PC_MODE_COUNT) {
                prv_run(c, k, (int)m);
                c->counts.runs++;
            }
        }
    }
    return test_failures == before;
}

void pc_close(pc_campaign_t *c)
{
    free(c->snapshot);
    free(c->pkg);
    free(c->model);
    free(c->wrap);
    tv_device_free(c->dev);
    free(c->dev);
    memset(c, 0, sizeof(*c));
}
