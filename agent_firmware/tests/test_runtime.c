/* Runtime state machine over the host RAM flash: install / activate / selftest / confirm / revert flows,
 * trial boots, resume after a reboot mid-download, wrong chunk offsets, NOR-rule violations, the
 * power-cut injector itself, the state log (compaction, torn and corrupt records). */
#include <stdlib.h>
#include <string.h>

#include "test_util.h"
#include "tv_support.h"

#define CHUNK 256u

typedef struct prv_pkg {
    uint8_t *data;
    uint32_t len;
} prv_pkg_t;

static prv_pkg_t prv_load(const char *name)
{
    prv_pkg_t p;
    p.data = tv_read_vector(name, &p.len);
    CHECK(p.data != NULL, "missing vector %s", name);
    return p;
}

static tv_device_t *prv_new_device(uint32_t sector)
{
    tv_device_t *d = calloc(1, sizeof(*d));
    if (d == NULL || tv_device_init(d, sector) != 0) {
        fprintf(stderr, "cannot create a device from %s\n", tv_vector_dir());
        exit(1);
    }
    CHECK_RC(tv_device_boot(d), 0, "boot");
    return d;
}

static void prv_free_device(tv_device_t *d)
{
    tv_device_free(d);
    free(d);
}

static tfa_status_t prv_status(const tv_device_t *d)
{
    tfa_status_t st;
    CHECK_RC(tfa_runtime_status(&d->rt, &st), 0, "status");
    return st;
}

static uint32_t prv_active_seq(const tv_device_t *d)
{
    uint32_t seq = 0;
    int err = tv_check_active_model(d, &seq);
    return err == 0 ? seq : 0u;
}

static void test_flash_host(void)
{
    tfa_flash_host_t fh;
    CHECK_RC(tfa_flash_host_init(&fh, NULL, 4096, 1000), -TFA_ERR_FLASH_IO, "sector not a power of two");
    CHECK_RC(tfa_flash_host_init(&fh, NULL, 4096 + 256, 512), -TFA_ERR_FLASH_IO, "size not a multiple");
    CHECK_RC(tfa_flash_host_init(&fh, NULL, 4096, 256), 0, "init");
    const tfa_flash_t *f = &fh.flash;
    CHECK(f->mapped != NULL && f->mapped[0] == 0xFF && f->mapped[4095] == 0xFF, "starts erased");
    uint8_t a[8] = {0xF0, 0x0F, 0x00, 0xFF, 0x12, 0x34, 0x56, 0x78};
    CHECK_RC(f->program(f->ctx, 100, a, 8), 0, "program");
    CHECK(memcmp(f->mapped + 100, a, 8) == 0, "programmed bytes");
    /* Programming again over programmed bytes: clearing more bits is fine, setting one is not. */
    uint8_t b[1] = {0x00};
    CHECK_RC(f->program(f->ctx, 100, b, 1), 0, "1 -> 0 over programmed");
    uint8_t c[1] = {0x10}; /* bit 4 is 0 in 0x0F */
    CHECK_RC(f->program(f->ctx, 101, c, 1), -TFA_ERR_FLASH_NOT_ERASED, "0 -> 1 refused");
    CHECK(f->mapped[101] == 0x0F, "refused program changed nothing");
    CHECK_RC(f->erase(f->ctx, 100), -TFA_ERR_FLASH_IO, "unaligned erase");
    CHECK_RC(f->program(f->ctx, 4090, a, 8), -TFA_ERR_FLASH_IO, "program past the end");
    uint8_t r[8];
    CHECK_RC(f->read(f->ctx, 4092, r, 8), -TFA_ERR_FLASH_IO, "read past the end");
    CHECK_RC(f->erase(f->ctx, 0), 0, "erase");
    CHECK(f->mapped[100] == 0xFF && f->mapped[107] == 0xFF, "erased to 0xFF");
    CHECK_RC(f->program(f->ctx, 101, c, 1), 0, "program after erase");

    /* Power-cut injector: the 2nd operation from now is torn (half applied), later ones fail. */
    uint32_t ops = tfa_flash_host_op_count(&fh);
    uint8_t zeros[16];
    memset(zeros, 0, sizeof(zeros));
    tfa_flash_host_cut_after(&fh, 2, TFA_CUT_HALF, 1);
    CHECK_RC(f->program(f->ctx, 512, zeros, 16), 0, "op before the cut");
    CHECK_RC(f->program(f->ctx, 1024, zeros, 16), -TFA_ERR_FLASH_IO, "torn op");
    CHECK(f->mapped[1024 + 7] == 0x00 && f->mapped[1024 + 8] == 0xFF, "first half landed only");
    CHECK(tfa_flash_host_is_off(&fh), "power is off");
    CHECK_RC(f->erase(f->ctx, 512), -TFA_ERR_FLASH_IO, "erase without power");
    CHECK(f->mapped[512] == 0x00, "nothing erased without power");
    CHECK_RC(f->read(f->ctx, 512, r, 8), 0, "read without power is allowed (RAM copy)");
    tfa_flash_host_power_on(&fh);
    CHECK(tfa_flash_host_op_count(&fh) == ops + 2u, "ops counted: %u", tfa_flash_host_op_count(&fh) - ops);
    CHECK_RC(f->program(f->ctx, 1024 + 8, zeros, 8), 0, "works after power on");
    /* Torn erase: half the sector erased, the rest keeps its data. */
    tfa_flash_host_cut_after(&fh, 1, TFA_CUT_HALF, 1);
    CHECK_RC(f->erase(f->ctx, 1024), -TFA_ERR_FLASH_IO, "torn erase");
    CHECK(f->mapped[1024] == 0xFF, "first half erased");
    tfa_flash_host_power_on(&fh);
    /* Garbage: the torn program only clears bits it was asked to clear. */
    uint8_t pattern[64];
    for (uint32_t i = 0; i < 64; i++) {
        pattern[i] = (uint8_t)(i * 37u);
    }
    CHECK_RC(f->erase(f->ctx, 2048), 0, "erase");
    tfa_flash_host_cut_after(&fh, 1, TFA_CUT_GARBAGE, 7);
    CHECK_RC(f->program(f->ctx, 2048, pattern, 64), -TFA_ERR_FLASH_IO, "garbage program");
    int subset = 1;
    for (uint32_t i = 0; i < 64; i++) {
        subset &= (f->mapped[2048 + i] & pattern[i]) == pattern[i];
    }
    CHECK(subset, "garbage program cleared only bits of the pattern");
    tfa_flash_host_power_on(&fh);
    CHECK_RC(f->program(f->ctx, 2048, pattern, 64), 0, "the same data programs over a torn write");
    CHECK(memcmp(f->mapped + 2048, pattern, 64) == 0, "pattern complete");
    tfa_flash_host_free(&fh);

    /* Caller-provided storage keeps its contents (a previous flash image). */
    static uint8_t image[1024];
    memset(image, 0xAB, sizeof(image));
    CHECK_RC(tfa_flash_host_init(&fh, image, sizeof(image), 256), 0, "init over an image");
    CHECK(fh.flash.mapped == image && image[10] == 0xAB, "image kept");
    tfa_flash_host_free(&fh);
    CHECK(image[10] == 0xAB, "caller storage not freed or wiped");
}

static void test_fresh_and_full_flow(void)
{
    tv_device_t *d = prv_new_device(0);
    tfa_status_t st = prv_status(d);
    CHECK(st.phase == TFA_PHASE_IDLE && st.active_slot == 0xFF && !st.slots[0].valid && !st.slots[1].valid &&
              st.security_floor == 0 && st.last_error == 0,
          "fresh status");
    uint32_t len = 1;
    CHECK(tfa_active_model(&d->rt, &len) == NULL && len == 0, "no model yet");
    CHECK_RC(tfa_selftest(&d->rt), -TFA_ERR_BAD_STATE, "selftest without a model");
    CHECK_RC(tfa_revert(&d->rt), -TFA_ERR_NO_PREVIOUS, "revert without a model");
    CHECK_RC(tfa_activate(&d->rt), -TFA_ERR_BAD_STATE, "activate without a download");
    CHECK_RC(tfa_confirm(&d->rt), -TFA_ERR_BAD_STATE, "confirm outside trial");
    CHECK_RC(tfa_install_end(&d->rt), -TFA_ERR_BAD_STATE, "end without begin");
    CHECK_RC(tfa_install_chunk(&d->rt, 0, (const uint8_t *)"x", 1), -TFA_ERR_BAD_STATE, "chunk without begin");

    prv_pkg_t active = prv_load("good_active.tfpkg");
    prv_pkg_t good = prv_load("good.tfpkg");
    if (active.data == NULL || good.data == NULL) {
        prv_free_device(d);
        free(active.data);
        free(good.data);
        return;
    }
    uint32_t payload = good.len - TFA_MANIFEST_SIZE;
    CHECK_RC(tv_install_confirm(&d->rt, active.data, active.len, CHUNK), 0, "first install");
    st = prv_status(d);
    CHECK(st.active_slot == 0 && st.slots[0].valid && !st.slots[1].valid && st.security_floor == 3 &&
              st.phase == TFA_PHASE_IDLE,
          "after the first install: slot %u floor %u", st.active_slot, st.security_floor);
    CHECK(prv_active_seq(d) == 5, "active sequence 5");
    CHECK_RC(tfa_revert(&d->rt), -TFA_ERR_NO_PREVIOUS, "nothing to revert to");

    /* Second install, step by step. */
    CHECK_RC(tfa_install_begin(&d->rt, good.data, 100), -TFA_ERR_TRUNCATED, "begin with a partial manifest");
    CHECK_RC(tfa_install_begin(&d->rt, good.data, TFA_MANIFEST_SIZE), 0, "begin");
    st = prv_status(d);
    CHECK(st.phase == TFA_PHASE_DOWNLOADING && st.target_slot == 1 && st.download_offset == 0 &&
              st.download_size == payload && !st.slots[1].valid && st.slots[1].manifest.sequence == 6,
          "downloading status");
    const uint8_t *pay = good.data + TFA_MANIFEST_SIZE;
    CHECK_RC(tfa_install_chunk(&d->rt, 0, pay, CHUNK), 0, "chunk 0");
    CHECK_RC(tfa_install_chunk(&d->rt, 0, pay, CHUNK), -TFA_ERR_BAD_OFFSET, "chunk 0 again");
    CHECK_RC(tfa_install_chunk(&d->rt, 2 * CHUNK, pay + 2 * CHUNK, CHUNK), -TFA_ERR_BAD_OFFSET, "skip ahead");
    st = prv_status(d);
    CHECK(st.download_offset == CHUNK && st.last_error == TFA_ERR_BAD_OFFSET, "resume point after a bad offset");
    CHECK_RC(tfa_install_end(&d->rt), -TFA_ERR_SIZE_MISMATCH, "end before the payload is complete");
    CHECK_RC(tfa_install_chunk(&d->rt, CHUNK, pay + CHUNK, payload), -TFA_ERR_SIZE_MISMATCH,
             "chunk beyond the payload");
    CHECK_RC(tfa_install_chunk(&d->rt, CHUNK, pay + CHUNK, 0), 0, "empty chunk");
    CHECK_RC(tfa_activate(&d->rt), -TFA_ERR_BAD_STATE, "activate while downloading");
    CHECK_RC(tfa_revert(&d->rt), -TFA_ERR_BAD_STATE, "revert while downloading");
    CHECK_RC(tfa_install_chunk(&d->rt, CHUNK, pay + CHUNK, payload - CHUNK), 0, "rest in one chunk");
    CHECK_RC(tfa_install_end(&d->rt), 0, "end");
    CHECK_RC(tfa_install_end(&d->rt), 0, "end again");
    st = prv_status(d);
    CHECK(st.phase == TFA_PHASE_DOWNLOADED && st.slots[1].valid && st.active_slot == 0, "downloaded status");
    CHECK_RC(tfa_activate(&d->rt), 0, "activate");
    st = prv_status(d);
    CHECK(st.phase == TFA_PHASE_TRIAL && st.active_slot == 1 && st.security_floor == 3, "trial status");
    CHECK(prv_active_seq(d) == 6, "trial model active");
    CHECK_RC(tfa_install_begin(&d->rt, good.data, good.len), -TFA_ERR_BAD_STATE, "begin during trial");
    CHECK_RC(tfa_confirm(&d->rt), -TFA_ERR_BAD_STATE, "confirm before selftest");
    CHECK_RC(tfa_selftest(&d->rt), 0, "selftest");
    CHECK(prv_status(d).selftest_passed == 1, "selftest passed flag");
    CHECK_RC(tfa_confirm(&d->rt), 0, "confirm");
    st = prv_status(d);
    CHECK(st.phase == TFA_PHASE_IDLE && st.active_slot == 1 && st.slots[0].valid && st.slots[1].valid,
          "confirmed status");
    CHECK_RC(tv_device_boot(d), 0, "reboot");
    CHECK(prv_active_seq(d) == 6 && prv_status(d).phase == TFA_PHASE_IDLE, "confirmed model survives reboot");

    /* The same package again is a replay. */
    CHECK_RC(tfa_install_begin(&d->rt, good.data, good.len), -TFA_ERR_REPLAYED, "replay");

    /* Server rollback: back to sequence 5 without download, and forth again. */
    CHECK_RC(tfa_revert(&d->rt), 0, "rollback");
    CHECK(prv_active_seq(d) == 5 && prv_status(d).phase == TFA_PHASE_IDLE, "rolled back to 5");
    CHECK_RC(tv_device_boot(d), 0, "reboot");
    CHECK(prv_active_seq(d) == 5, "rollback survives reboot");
    CHECK_RC(tfa_revert(&d->rt), 0, "roll forward");
    CHECK(prv_active_seq(d) == 6, "forward to 6");
    CHECK_RC(tfa_selftest(&d->rt), 0, "selftest of a confirmed model reports only");
    free(active.data);
    free(good.data);
    prv_free_device(d);
}

/* Self-test hook controlled by the test. */
static int g_hook_result;
static int g_hook_calls;
static int prv_hook(void *ctx, const tfa_manifest_t *m, const uint8_t *model, uint32_t len)
{
    (void)ctx;
    g_hook_calls++;
    CHECK(model != NULL && len == m->model_size, "hook gets the mapped model");
    return g_hook_result;
}

static void test_trial_failures(void)
{
    tv_device_t *d = prv_new_device(0);
    d->cfg.selftest_hook = prv_hook;
    g_hook_result = 0;
    CHECK_RC(tv_install_vector(&d->rt, "good_active.tfpkg", CHUNK), 0, "setup");
    prv_pkg_t good = prv_load("good.tfpkg");
    prv_pkg_t edges = prv_load("good_edges.tfpkg");
    if (good.data == NULL || edges.data == NULL) {
        prv_free_device(d);
        return;
    }

    /* 1. Hook fails: revert, trial slot invalid, error reported. */
    CHECK_RC(tv_download(&d->rt, good.data, good.len, CHUNK), 0, "download");
    CHECK_RC(tfa_activate(&d->rt), 0, "activate");
    g_hook_result = -TFA_ERR_SELFTEST_FAILED;
    g_hook_calls = 0;
    CHECK_RC(tfa_selftest(&d->rt), -TFA_ERR_SELFTEST_FAILED, "hook failure");
    CHECK(g_hook_calls == 1, "hook called once");
    tfa_status_t st = prv_status(d);
    CHECK(st.phase == TFA_PHASE_IDLE && st.active_slot == 0 && !st.slots[1].valid &&
              st.last_error == TFA_ERR_SELFTEST_FAILED,
          "reverted after a failed hook");
    CHECK(prv_active_seq(d) == 5, "old model back");
    CHECK_RC(tfa_revert(&d->rt), -TFA_ERR_NO_PREVIOUS, "the failed model is gone");
    g_hook_result = 12345; /* not an error code: still a failure */
    CHECK_RC(tfa_selftest(&d->rt), -TFA_ERR_SELFTEST_FAILED, "odd hook result outside trial");
    CHECK(prv_active_seq(d) == 5 && prv_status(d).phase == TFA_PHASE_IDLE, "outside trial: report only");
    g_hook_result = 0;

    /* 2. Corrupted model in flash during trial: integrity check catches it. */
    CHECK_RC(tv_download(&d->rt, good.data, good.len, CHUNK), 0, "download again");
    CHECK_RC(tfa_activate(&d->rt), 0, "activate again");
    uint32_t model_addr = tfa_slot_address(&d->rt, 1) + TFA_SLOT_MODEL_OFFSET;
    d->fh.mem[model_addr + 100] &= 0x7E; /* bit rot */
    g_hook_calls = 0;
    CHECK_RC(tfa_selftest(&d->rt), -TFA_ERR_DIGEST_MISMATCH, "corrupt model");
    CHECK(g_hook_calls == 0, "hook not run on a corrupt model");
    CHECK(prv_active_seq(d) == 5 && !prv_status(d).slots[1].valid, "reverted from the corrupt model");

    /* 3. Abandon a trial by command. */
    CHECK_RC(tv_download(&d->rt, good.data, good.len, CHUNK), 0, "download 3");
    CHECK_RC(tfa_activate(&d->rt), 0, "activate 3");
    CHECK_RC(tfa_revert(&d->rt), 0, "revert in trial");
    st = prv_status(d);
    CHECK(st.phase == TFA_PHASE_IDLE && st.active_slot == 0 && !st.slots[1].valid, "trial abandoned");

    /* 4. Trial boots: max_trial_boots = 1, so the second reboot in trial reverts. */
    CHECK_RC(tv_download(&d->rt, good.data, good.len, CHUNK), 0, "download 4");
    CHECK_RC(tfa_activate(&d->rt), 0, "activate 4");
    CHECK_RC(tv_device_boot(d), 0, "trial boot 1");
    st = prv_status(d);
    CHECK(st.phase == TFA_PHASE_TRIAL && st.boot_attempts == 1 && st.active_slot == 1, "still on trial");
    CHECK_RC(tfa_confirm(&d->rt), -TFA_ERR_BAD_STATE, "a reboot forgets the selftest");
    CHECK_RC(tv_device_boot(d), 0, "trial boot 2");
    st = prv_status(d);
    CHECK(st.phase == TFA_PHASE_IDLE && st.active_slot == 0 && !st.slots[1].valid &&
              st.last_error == TFA_ERR_SELFTEST_FAILED,
          "reverted after too many trial boots (phase %u slot %u)", st.phase, st.active_slot);

    /* 5. Within the allowed boots the trial can still be confirmed. */
    CHECK_RC(tv_download(&d->rt, edges.data, edges.len, CHUNK), 0, "download 5");
    CHECK_RC(tfa_activate(&d->rt), 0, "activate 5");
    CHECK_RC(tv_device_boot(d), 0, "trial boot");
    CHECK_RC(tfa_selftest(&d->rt), 0, "selftest after the reboot");
    CHECK_RC(tfa_confirm(&d->rt), 0, "confirm after one trial boot");
    CHECK(prv_active_seq(d) == 0xFFFFFFFFu, "edges model confirmed");
    CHECK_RC(tfa_install_begin(&d->rt, good.data, good.len), -TFA_ERR_REPLAYED, "nothing above 2^32-1");

    /* 6. max_trial_boots = 0: the first reboot in trial reverts. */
    tv_device_t *z = prv_new_device(0);
    z->cfg.max_trial_boots = 0;
    CHECK_RC(tv_install_vector(&z->rt, "good_active.tfpkg", CHUNK), 0, "setup z");
    CHECK_RC(tv_download(&z->rt, good.data, good.len, CHUNK), 0, "download z");
    CHECK_RC(tfa_activate(&z->rt), 0, "activate z");
    CHECK_RC(tv_device_boot(z), 0, "boot z");
    CHECK(prv_active_seq(z) == 5 && prv_status(z).phase == TFA_PHASE_IDLE, "reverted at the first boot");
    prv_free_device(z);
    free(good.data);
    free(edges.data);
    prv_free_device(d);
}

static void test_resume_and_abort(void)
{
    tv_device_t *d = prv_new_device(0);
    CHECK_RC(tv_install_vector(&d->rt, "good_active.tfpkg", CHUNK), 0, "setup");
    prv_pkg_t good = prv_load("good.tfpkg");
    prv_pkg_t sel = prv_load("good_selftest.tfpkg");
    if (good.data == NULL || sel.data == NULL) {
        prv_free_device(d);
        return;
    }
    const uint8_t *pay = good.data + TFA_MANIFEST_SIZE;
    uint32_t payload = good.len - TFA_MANIFEST_SIZE;
    CHECK_RC(tfa_install_begin(&d->rt, good.data, good.len), 0, "begin");
    CHECK_RC(tfa_install_chunk(&d->rt, 0, pay, 1000), 0, "first 1000 bytes");
    /* Disconnect: the same begin again resumes where it was. */
    CHECK_RC(tfa_install_begin(&d->rt, good.data, good.len), 0, "begin again");
    CHECK(prv_status(d).download_offset == 1000, "resume point kept by a repeated begin");
    /* Reboot mid-download. */
    CHECK_RC(tv_device_boot(d), 0, "reboot");
    tfa_status_t st = prv_status(d);
    CHECK(st.phase == TFA_PHASE_DOWNLOADING && st.download_offset == 1000 && st.download_size == payload &&
              st.target_slot == 1 && st.slots[1].manifest.sequence == 6,
          "resumable after reboot: phase %u offset %u", st.phase, st.download_offset);
    CHECK(prv_active_seq(d) == 5, "old model active while downloading");
    CHECK_RC(tfa_install_chunk(&d->rt, 0, pay, 100), -TFA_ERR_BAD_OFFSET, "restart from 0 refused");
    CHECK_RC(tfa_install_chunk(&d->rt, 1000, pay + 1000, 700), 0, "continue after reboot");
    CHECK_RC(tv_device_boot(d), 0, "reboot 2");
    CHECK_RC(tfa_install_begin(&d->rt, good.data, good.len), 0, "begin after reboot resumes");
    CHECK(prv_status(d).download_offset == 1700, "offset 1700");
    CHECK_RC(tfa_install_chunk(&d->rt, 1700, pay + 1700, payload - 1700), 0, "rest");
    CHECK_RC(tfa_install_end(&d->rt), 0, "end");
    /* Reboot while downloaded: still downloaded, then activate. */
    CHECK_RC(tv_device_boot(d), 0, "reboot 3");
    CHECK(prv_status(d).phase == TFA_PHASE_DOWNLOADED, "downloaded survives reboot");
    /* A different package now replaces the finished download. */
    CHECK_RC(tfa_install_begin(&d->rt, sel.data, sel.len), 0, "begin another package");
    st = prv_status(d);
    CHECK(st.phase == TFA_PHASE_DOWNLOADING && st.download_offset == 0 && !st.slots[1].valid &&
              st.slots[1].manifest.sequence == 7,
          "new download restarted");
    CHECK_RC(tfa_install_abort(&d->rt), 0, "abort");
    st = prv_status(d);
    CHECK(st.phase == TFA_PHASE_IDLE && st.target_slot == 0xFF && !st.slots[1].valid, "aborted");
    CHECK_RC(tfa_install_abort(&d->rt), 0, "abort in idle");
    CHECK_RC(tfa_install_chunk(&d->rt, 0, pay, 10), -TFA_ERR_BAD_STATE, "chunk after abort");
    /* Digest mismatch: corrupt one byte of the slot between the chunks and end. */
    CHECK_RC(tfa_install_begin(&d->rt, good.data, good.len), 0, "begin 4");
    CHECK_RC(tfa_install_chunk(&d->rt, 0, pay, payload), 0, "all in one chunk");
    d->fh.mem[tfa_slot_address(&d->rt, 1) + TFA_SLOT_MODEL_OFFSET + 5] ^= 0x01;
    CHECK_RC(tfa_install_end(&d->rt), -TFA_ERR_DIGEST_MISMATCH, "end over a corrupt slot");
    st = prv_status(d);
    CHECK(st.phase == TFA_PHASE_IDLE && !st.slots[1].valid && st.last_error == TFA_ERR_DIGEST_MISMATCH &&
              prv_active_seq(d) == 5,
          "dropped download after a digest mismatch");
    /* A slot left non-erased: the NOR rule violation is caught and reported, nothing breaks. */
    CHECK_RC(tfa_install_begin(&d->rt, good.data, good.len), 0, "begin 5");
    uint32_t model_addr = tfa_slot_address(&d->rt, 1) + TFA_SLOT_MODEL_OFFSET;
    uint32_t stray = 0;
    while (stray < 63u && pay[stray] == 0x00) {
        stray++;
    }
    CHECK(pay[stray] != 0x00, "payload has a non-zero byte");
    d->fh.mem[model_addr + stray] = 0x00; /* a stray programmed byte where the chunk goes */
    CHECK_RC(tfa_install_chunk(&d->rt, 0, pay, 64), -TFA_ERR_FLASH_NOT_ERASED, "NOR violation caught");
    st = prv_status(d);
    CHECK(st.download_offset == 0 && st.last_error == TFA_ERR_FLASH_NOT_ERASED && prv_active_seq(d) == 5,
          "violation leaves the resume point and the active model");
    CHECK_RC(tfa_install_abort(&d->rt), 0, "abort 5");
    /* A new begin erases the slot again, so the download works. */
    CHECK_RC(tv_install_confirm(&d->rt, good.data, good.len, 300), 0, "full install after all that");
    CHECK(prv_active_seq(d) == 6, "sequence 6 active");
    free(good.data);
    free(sel.data);
    prv_free_device(d);
}

static void test_rollback_floor(void)
{
    /* Confirm counter 2 (policy_rollback, seq 6), then counter 3 (good_selftest, seq 7): the floor is 3 and
     * a rollback to the counter-2 model is refused. */
    tv_device_t *d = prv_new_device(0);
    CHECK_RC(tv_install_vector(&d->rt, "policy_rollback.tfpkg", CHUNK), 0, "counter 2 on a fresh device");
    CHECK(prv_status(d).security_floor == 2, "floor 2");
    CHECK_RC(tv_install_vector(&d->rt, "good_selftest.tfpkg", CHUNK), 0, "counter 3");
    CHECK(prv_status(d).security_floor == 3, "floor 3");
    CHECK_RC(tfa_revert(&d->rt), -TFA_ERR_ROLLBACK_REFUSED, "rollback below the floor");
    CHECK(prv_active_seq(d) == 7, "still 7");
    prv_free_device(d);

    /* The floor rises only at confirm: during the trial of a counter-3 model, the floor stays. */
    d = prv_new_device(0);
    CHECK_RC(tv_install_vector(&d->rt, "policy_rollback.tfpkg", CHUNK), 0, "counter 2");
    prv_pkg_t sel = prv_load("good_selftest.tfpkg");
    if (sel.data != NULL) {
        CHECK_RC(tv_download(&d->rt, sel.data, sel.len, CHUNK), 0, "download");
        CHECK_RC(tfa_activate(&d->rt), 0, "activate");
        CHECK(prv_status(d).security_floor == 2, "floor unchanged in trial");
        CHECK_RC(tfa_revert(&d->rt), 0, "abandon");
        CHECK(prv_status(d).security_floor == 2 && prv_active_seq(d) == 6, "floor still 2");
    }
    free(sel.data);
    prv_free_device(d);
}

static void test_state_log(void)
{
    tfa_flash_host_t fh;
    CHECK_RC(tfa_flash_host_init(&fh, NULL, 4 * 256, 256), 0, "flash");
    tfa_state_log_t log;
    tfa_state_t st;
    CHECK_RC(tfa_state_load(&log, &fh.flash, 0, &st), 0, "empty area loads");
    CHECK(st.active_slot == TFA_STATE_NO_SLOT && st.phase == 0 && log.seq == 0, "default state");
    /* 5 records per sector: 100 saves compact many times, each load sees the newest. */
    uint32_t erases_before = tfa_flash_host_op_count(&fh);
    for (uint32_t i = 1; i <= 100; i++) {
        st.download_offset = i;
        CHECK_RC(tfa_state_save(&log, &st), 0, "save");
        tfa_state_log_t log2;
        tfa_state_t back;
        CHECK_RC(tfa_state_load(&log2, &fh.flash, 0, &back), 0, "load");
        CHECK(back.download_offset == i && log2.seq == log.seq && log2.next_index == log.next_index &&
                  log2.sector == log.sector,
              "newest record after %u saves", i);
    }
    uint32_t ops = tfa_flash_host_op_count(&fh) - erases_before;
    /* 100 programs plus at most 2 erases per sector switch (one every 5 saves). */
    CHECK(ops >= 100u && ops <= 100u + 2u * 21u, "operations for 100 saves: %u", ops);
    /* A torn record is skipped; the next save goes after it. */
    tfa_flash_host_cut_after(&fh, 1, TFA_CUT_HALF, 3);
    st.download_offset = 555;
    CHECK(tfa_state_save(&log, &st) != 0, "torn save fails");
    tfa_flash_host_power_on(&fh);
    tfa_state_t back;
    CHECK_RC(tfa_state_load(&log, &fh.flash, 0, &back), 0, "load after torn save");
    CHECK(back.download_offset == 100, "previous record wins");
    st.download_offset = 556;
    for (uint32_t i = 0; i < TFA_STATE_DECODER_SIZE; i++) {
        st.decoder[i] = (uint8_t)(0xA0u + i);
    }
    CHECK_RC(tfa_state_save(&log, &st), 0, "save after torn");
    CHECK_RC(tfa_state_load(&log, &fh.flash, 0, &back), 0, "load");
    CHECK(back.download_offset == 556 && memcmp(back.decoder, st.decoder, TFA_STATE_DECODER_SIZE) == 0,
          "new record wins, decoder checkpoint kept");
    /* Encode/decode round trip and CRC check. */
    uint8_t rec[TFA_STATE_RECORD_SIZE];
    tfa_state_encode(&st, 77, rec);
    uint32_t seq = 0;
    CHECK_RC(tfa_state_decode(rec, &back, &seq), 0, "decode");
    CHECK(seq == 77 && back.download_offset == 556, "round trip");
    rec[20] ^= 0x10;
    CHECK_RC(tfa_state_decode(rec, &back, &seq), -TFA_ERR_STATE_CORRUPT, "CRC catches a flipped bit");
    /* Garbage everywhere: STATE_CORRUPT, the default state, and the log starts over on the next save. */
    for (uint32_t i = 0; i < 512; i++) {
        fh.mem[i] = (uint8_t)(i * 7u + 1u);
    }
    CHECK_RC(tfa_state_load(&log, &fh.flash, 0, &back), -TFA_ERR_STATE_CORRUPT, "garbage area");
    CHECK(back.active_slot == TFA_STATE_NO_SLOT, "default after corruption");
    st.download_offset = 9;
    CHECK_RC(tfa_state_save(&log, &st), 0, "save over garbage");
    CHECK_RC(tfa_state_load(&log, &fh.flash, 0, &back), 0, "load");
    CHECK(back.download_offset == 9, "recovered");
    tfa_flash_host_free(&fh);

    /* A device whose state area is garbage boots fresh and reports STATE_CORRUPT. */
    tv_device_t *d = prv_new_device(0);
    CHECK_RC(tv_install_vector(&d->rt, "good_active.tfpkg", CHUNK), 0, "setup");
    memset(d->fh.mem, 0x5A, 2u * d->sector_size);
    CHECK_RC(tv_device_boot(d), 0, "boot over a garbage state area");
    tfa_status_t s2 = prv_status(d);
    CHECK(s2.last_error == TFA_ERR_STATE_CORRUPT && s2.active_slot == 0xFF, "fresh with STATE_CORRUPT");
    CHECK_RC(tv_install_vector(&d->rt, "good_active.tfpkg", CHUNK), 0, "usable again");
    prv_free_device(d);
}

/* Property test of the state log alone: random saves, each maybe torn by a power cut in a random mode
 * after a random number of operations, on sectors holding 2 and 5 records (compaction every few saves).
 * After every power cycle the loaded state is the last durable one or the one being written. */
static void test_state_log_random_cuts(void)
{
    static const uint32_t sectors[] = {128, 256};
    uint32_t rng = 12345;
    for (uint32_t si = 0; si < 2u; si++) {
        tfa_flash_host_t fh;
        CHECK_RC(tfa_flash_host_init(&fh, NULL, 2u * sectors[si], sectors[si]), 0, "flash");
        tfa_state_log_t log;
        tfa_state_t committed;
        CHECK_RC(tfa_state_load(&log, &fh.flash, 0, &committed), 0, "empty");
        uint32_t torn = 0;
        for (uint32_t i = 1; i <= 3000u; i++) {
            test_xorshift32(&rng);
            tfa_state_t next = committed;
            next.download_offset = i;
            next.security_floor = rng;
            int cut = (rng & 3u) == 0u;
            if (cut) {
                tfa_flash_host_cut_after(&fh, 1u + (rng >> 8) % 3u, (tfa_cut_mode_t)((rng >> 4) & 3u), rng);
            }
            int rc = tfa_state_save(&log, &next);
            tfa_flash_host_power_on(&fh);
            tfa_state_t back;
            int lrc = tfa_state_load(&log, &fh.flash, 0, &back);
            CHECK_RC(lrc, 0, "load after a save");
            if (rc == 0) {
                CHECK(back.download_offset == i && back.security_floor == rng, "saved state lost at %u", i);
            } else {
                torn++;
                CHECK(back.download_offset == i || back.download_offset == committed.download_offset,
                      "state after a torn save at %u: %u", i, back.download_offset);
            }
            if (lrc != 0 || test_failures > 0) {
                break;
            }
            committed = back;
        }
        CHECK(torn > 100u, "cuts happened: %u", torn);
        tfa_flash_host_free(&fh);
    }
}

static void test_small_sectors_and_geometry(void)
{
    /* Sector 256: 5 state records per sector, so an install compacts the log several times. */
    tv_device_t *d = prv_new_device(256);
    CHECK_RC(tv_install_vector(&d->rt, "good_active.tfpkg", 64), 0, "install with 64-byte chunks");
    CHECK_RC(tv_install_vector(&d->rt, "good.tfpkg", 64), 0, "second install");
    CHECK_RC(tv_device_boot(d), 0, "reboot");
    CHECK(prv_active_seq(d) == 6 && prv_status(d).slots[0].valid, "state intact after compactions");
    CHECK(d->rt.log.seq > 2u * (d->sector_size / TFA_STATE_RECORD_SIZE), "log wrapped (seq %u)", d->rt.log.seq);
    prv_free_device(d);

    /* Geometry the flash cannot hold. */
    d = prv_new_device(0);
    d->cfg.slot_size = d->fh.flash.size; /* two slots do not fit */
    CHECK_RC(tv_device_boot(d), -TFA_ERR_FLASH_IO, "slots larger than the flash");
    CHECK_RC(tfa_install_begin(&d->rt, (const uint8_t *)"TFMF", 4), -TFA_ERR_BAD_STATE, "not booted");
    d->cfg.slot_size = 1000; /* not a sector multiple */
    CHECK_RC(tv_device_boot(d), -TFA_ERR_FLASH_IO, "slot not a sector multiple");
    prv_free_device(d);
    CHECK(sizeof(tfa_runtime_t) <= 1024u, "runtime struct %zu bytes", sizeof(tfa_runtime_t));
    printf("test_runtime: sizeof(tfa_runtime_t) = %zu bytes\n", sizeof(tfa_runtime_t));
}

int main(void)
{
    test_flash_host();
    test_fresh_and_full_flow();
    test_trial_failures();
    test_resume_and_abort();
    test_rollback_floor();
    test_state_log();
    test_state_log_random_cuts();
    test_small_sectors_and_geometry();
    return test_report("test_runtime");
}
