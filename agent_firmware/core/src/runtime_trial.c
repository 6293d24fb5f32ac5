/* After a download: activate (trial of the new slot), self-test, confirm (raises the security floor),
 * revert, and the active model as the engine reads it. */
#include <string.h>

#include "runtime_internal.h"

int tfa_activate(tfa_runtime_t *rt)
{
    if (rt == NULL || !rt->booted) {
        return -TFA_ERR_BAD_STATE;
    }
    if (rt->state.phase != TFA_PHASE_DOWNLOADED || !prv_slot_ok(rt, rt->state.target_slot)) {
        return tfa_rt_fail(rt, -TFA_ERR_BAD_STATE);
    }
    tfa_state_t next = rt->state;
    next.active_slot = rt->state.target_slot;
    next.phase = TFA_PHASE_TRIAL;
    next.trial_boots = 0;
    next.target_slot = TFA_STATE_NO_SLOT;
    next.download_offset = 0;
    next.download_size = 0;
    next.last_error = 0;
    int err = tfa_rt_commit(rt, &next);
    if (err != 0) {
        return tfa_rt_fail(rt, err);
    }
    rt->selftest_passed = 0;
    return 0;
}

/* The model of slot as the engine reads it: in place through the memory map, or for a model encrypted
 * at rest decrypted into config->model_ram (tfa_rest_load). NULL when neither is possible. */
static const uint8_t *prv_model_bytes(const tfa_runtime_t *rt, uint8_t slot)
{
#ifndef TFA_NO_ENCRYPTION
    if (tfa_rest_encrypted(&rt->rest, slot)) {
        return tfa_rest_load(&rt->rest, slot, rt->config->model_ram);
    }
#endif
    return rt->flash->mapped != NULL ? rt->flash->mapped + prv_model_addr(rt, slot) : NULL;
}

/* Everything that must hold for the active model to run: authentic manifest, intact model, hook. */
static int prv_check_active(const tfa_runtime_t *rt)
{
    uint8_t slot = rt->state.active_slot;
    const tfa_manifest_t *m = &rt->slot_manifest[slot];
    tfa_manifest_t reread;
    int err = tfa_rt_load_manifest(rt, slot, &reread);
    if (err != 0) {
        return err == -TFA_ERR_FLASH_IO ? err : -TFA_ERR_DIGEST_MISMATCH;
    }
    if (memcmp(&reread, m, sizeof(reread)) != 0) {
        return -TFA_ERR_DIGEST_MISMATCH;
    }
    uint8_t digest[32];
    err = tfa_rt_hash_flash(rt, prv_model_addr(rt, slot), m->model_size, digest);
    if (err != 0) {
        return err;
    }
    if (memcmp(digest, m->model_sha256, 32) != 0) {
        return -TFA_ERR_DIGEST_MISMATCH;
    }
    const tfa_device_config_t *cfg = rt->config;
    if (cfg->selftest_hook != NULL) {
        const uint8_t *model = prv_model_bytes(rt, slot);
        err = cfg->selftest_hook(cfg->selftest_ctx, m, model, m->model_size);
        if (err != 0) {
            return (err < 0 && err > -256) ? err : -TFA_ERR_SELFTEST_FAILED;
        }
    }
    return 0;
}

int tfa_selftest(tfa_runtime_t *rt)
{
    if (rt == NULL || !rt->booted) {
        return -TFA_ERR_BAD_STATE;
    }
    if (!prv_slot_ok(rt, rt->state.active_slot)) {
        return tfa_rt_fail(rt, -TFA_ERR_BAD_STATE);
    }
    int result = prv_check_active(rt);
    if (result == 0) {
        if (rt->state.phase == TFA_PHASE_TRIAL) {
            rt->selftest_passed = 1;
        }
        return 0;
    }
    /* A flash read error says nothing about the model: report it, keep the trial. */
    if (rt->state.phase == TFA_PHASE_TRIAL && result != -TFA_ERR_FLASH_IO) {
        tfa_state_t next = rt->state;
        tfa_rt_abandon_trial(&next, (uint8_t)-result);
        rt->selftest_passed = 0;
        int err = tfa_rt_commit(rt, &next);
        if (err != 0) {
            return tfa_rt_fail(rt, err);
        }
    }
    return tfa_rt_fail(rt, result);
}

int tfa_confirm(tfa_runtime_t *rt)
{
    if (rt == NULL || !rt->booted) {
        return -TFA_ERR_BAD_STATE;
    }
    const tfa_manifest_t *m = tfa_active_manifest(rt);
    if (rt->state.phase != TFA_PHASE_TRIAL || !rt->selftest_passed || m == NULL) {
        return tfa_rt_fail(rt, -TFA_ERR_BAD_STATE);
    }
    tfa_state_t next = rt->state;
    next.phase = TFA_PHASE_IDLE;
    next.trial_boots = 0;
    next.last_error = 0;
    if (m->security_counter > next.security_floor) {
        next.security_floor = m->security_counter;
    }
    int err = tfa_rt_commit(rt, &next);
    if (err != 0) {
        return tfa_rt_fail(rt, err);
    }
    rt->selftest_passed = 0;
    return 0;
}

int tfa_revert(tfa_runtime_t *rt)
{
    if (rt == NULL || !rt->booted) {
        return -TFA_ERR_BAD_STATE;
    }
    uint8_t phase = rt->state.phase;
    if (phase == TFA_PHASE_DOWNLOADING || phase == TFA_PHASE_DOWNLOADED) {
        return tfa_rt_fail(rt, -TFA_ERR_BAD_STATE);
    }
    uint8_t active = rt->state.active_slot;
    if (active >= 2u) {
        return tfa_rt_fail(rt, -TFA_ERR_NO_PREVIOUS);
    }
    uint8_t other = (uint8_t)(1u - active);
    if (!prv_slot_ok(rt, other)) {
        return tfa_rt_fail(rt, -TFA_ERR_NO_PREVIOUS);
    }
    tfa_state_t next = rt->state;
    if (phase == TFA_PHASE_TRIAL) {
        tfa_rt_abandon_trial(&next, 0);
    } else {
        /* A rollback must not go below the floor raised by a later confirmed model. */
        if (rt->slot_manifest[other].security_counter < rt->state.security_floor) {
            return tfa_rt_fail(rt, -TFA_ERR_ROLLBACK_REFUSED);
        }
        next.active_slot = other;
        next.last_error = 0;
    }
    int err = tfa_rt_commit(rt, &next);
    if (err != 0) {
        return tfa_rt_fail(rt, err);
    }
    rt->selftest_passed = 0;
    return 0;
}

const uint8_t *tfa_active_model(const tfa_runtime_t *rt, uint32_t *len)
{
    const tfa_manifest_t *m = tfa_active_manifest(rt);
    const uint8_t *model = m != NULL ? prv_model_bytes(rt, rt->state.active_slot) : NULL;
    if (len != NULL) {
        *len = model != NULL ? m->model_size : 0u;
    }
    return model;
}
