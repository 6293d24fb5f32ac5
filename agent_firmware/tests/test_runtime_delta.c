/* Compressed and delta installs through the runtime (payload_encoding 1 and 2, PROTOCOL 1.4 and 5), with
 * the vectors of tests/vectors/index.json "delta_vectors": a device that runs good_active.tfpkg installs
 * delta_good.tfpkg / compressed_good.tfpkg and their format version 2 twins delta_v2_good.tfpkg /
 * compressed_v2_good.tfpkg (model_update.tflite) in chunks of any size; resumes after a
 * reboot at the recorded block boundary; rewinds to it after a flash failure; refuses a wrong base at
 * begin, a malformed stream while downloading and a stream that decodes to another model at end; a device
 * without a decoder workspace refuses encodings 1 and 2 with FIELD_RANGE. */
#include <stdlib.h>
#include <string.h>

#include "tv_support.h"

#define NEW_SEQ 6u
#define OLD_SEQ 5u

static tfa_delta_t g_workspace;

typedef struct prv_file {
    uint8_t *bytes;
    uint32_t len;
} prv_file_t;

static prv_file_t prv_load(const char *name)
{
    prv_file_t f = {NULL, 0};
    f.bytes = tv_read_vector(name, &f.len);
    CHECK(f.bytes != NULL, "cannot read %s in %s", name, tv_vector_dir());
    return f;
}

/* A device with the decoder workspace (or none) that installed and confirmed good_active.tfpkg. */
static int prv_setup(tv_device_t *d, uint32_t sector, int with_workspace, int with_old_model)
{
    if (tv_device_init(d, sector) != 0) {
        test_failures++;
        return -1;
    }
    d->cfg.delta_workspace = with_workspace ? &g_workspace : NULL;
    CHECK_RC(tv_device_boot(d), 0, "boot");
    if (with_old_model) {
        CHECK_RC(tv_install_vector(&d->rt, "good_active.tfpkg", 512), 0, "old model");
    }
    return 0;
}

static uint32_t prv_download_offset(const tv_device_t *d)
{
    tfa_status_t st;
    tfa_runtime_status(&d->rt, &st);
    return st.download_offset;
}

/* Chunks from the runtime's resume offset up to (not beyond) stop; returns the first error. */
static int prv_send(tv_device_t *d, const prv_file_t *pkg, uint32_t chunk, uint32_t stop)
{
    uint32_t payload = pkg->len - TFA_MANIFEST_SIZE;
    stop = stop < payload ? stop : payload;
    for (uint32_t off = prv_download_offset(d); off < stop;) {
        uint32_t n = stop - off < chunk ? stop - off : chunk;
        int rc = tfa_install_chunk(&d->rt, off, pkg->bytes + TFA_MANIFEST_SIZE + off, n);
        if (rc != 0) {
            return rc;
        }
        off += n;
        CHECK(prv_download_offset(d) == off, "within a boot the next offset is the bytes received");
    }
    return 0;
}

static int prv_finish(tv_device_t *d)
{
    int rc = tfa_install_end(&d->rt);
    rc = rc != 0 ? rc : tfa_activate(&d->rt);
    rc = rc != 0 ? rc : tfa_selftest(&d->rt);
    return rc != 0 ? rc : tfa_confirm(&d->rt);
}

/* The new model is active, confirmed, byte for byte model_update.tflite; the old one kept. */
static void prv_check_new_model(tv_device_t *d, const prv_file_t *update, const char *what)
{
    uint32_t seq = 0;
    CHECK_RC(tv_check_active_model(d, &seq), 0, what);
    uint32_t len = 0;
    const uint8_t *model = tfa_active_model(&d->rt, &len);
    CHECK(seq == NEW_SEQ && model != NULL && len == update->len && memcmp(model, update->bytes, len) == 0,
          "%s: active model is not model_update.tflite (seq %u)", what, seq);
    tfa_status_t st;
    tfa_runtime_status(&d->rt, &st);
    CHECK(st.phase == TFA_PHASE_IDLE && st.slots[1 - st.active_slot].valid &&
              st.slots[1 - st.active_slot].manifest.sequence == OLD_SEQ,
          "%s: phase %u, old model not kept", what, st.phase);
}

static void prv_test_installs(const char *name, const prv_file_t *update)
{
    static const uint32_t chunks[] = {1, 7, 64, 300, 1088, 1u << 20};
    prv_file_t pkg = prv_load(name);
    if (pkg.bytes == NULL) {
        return;
    }
    for (size_t i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
        tv_device_t *d = calloc(1, sizeof(*d));
        if (d == NULL || prv_setup(d, 0, 1, 1) != 0) {
            free(d);
            continue;
        }
        uint8_t *base_slot = malloc(d->cfg.slot_size);
        memcpy(base_slot, d->fh.mem + tfa_slot_address(&d->rt, 0), d->cfg.slot_size);
        CHECK_RC(tfa_install_begin(&d->rt, pkg.bytes, pkg.len), 0, name);
        uint32_t seq_begun = d->rt.log.seq;
        CHECK_RC(prv_send(d, &pkg, chunks[i], UINT32_MAX), 0, name);
        /* One record per block boundary (+1 for the stream header), never one per chunk. */
        uint32_t blocks = (update->len + 1023u) / 1024u;
        uint32_t records = d->rt.log.seq - seq_begun;
        CHECK(records >= 1u && records <= blocks + 1u, "%s chunk %u: %u state records for %u blocks", name,
              chunks[i], records, blocks);
        CHECK(memcmp(base_slot, d->fh.mem + tfa_slot_address(&d->rt, 0), d->cfg.slot_size) == 0,
              "%s: the base slot changed during the download", name);
        CHECK_RC(prv_finish(d), 0, name);
        prv_check_new_model(d, update, name);
        CHECK(memcmp(base_slot, d->fh.mem + tfa_slot_address(&d->rt, 0), d->cfg.slot_size) == 0,
              "%s: the base slot changed", name);
        CHECK_RC(tv_device_boot(d), 0, "reboot");
        prv_check_new_model(d, update, name);
        free(base_slot);
        tv_device_free(d);
        free(d);
    }
    free(pkg.bytes);
}

/* Reboot in the middle of a block: the download resumes at the recorded boundary, below what was sent. */
static void prv_test_resume(const char *name, const prv_file_t *update)
{
    prv_file_t pkg = prv_load(name);
    tv_device_t *d = calloc(1, sizeof(*d));
    if (pkg.bytes == NULL || d == NULL || prv_setup(d, 256, 1, 1) != 0) {
        free(pkg.bytes);
        free(d);
        return;
    }
    uint32_t payload = pkg.len - TFA_MANIFEST_SIZE;
    CHECK_RC(tfa_install_begin(&d->rt, pkg.bytes, pkg.len), 0, "begin");
    uint32_t sent = payload / 2u + 3u;
    CHECK_RC(prv_send(d, &pkg, 5, sent), 0, "first half");
    uint32_t recorded = d->rt.state.download_offset;
    CHECK(recorded > 0u && recorded < sent, "%s: recorded boundary %u, sent %u", name, recorded, sent);
    /* Within the boot, the recorded boundary is not where the next chunk goes. */
    CHECK_RC(tfa_install_chunk(&d->rt, recorded, pkg.bytes + TFA_MANIFEST_SIZE + recorded, 1),
             -TFA_ERR_BAD_OFFSET, "chunk at the recorded boundary within a boot");
    for (int reboot = 0; reboot < 2; reboot++) {
        CHECK_RC(tv_device_boot(d), 0, "reboot");
        tfa_status_t st;
        tfa_runtime_status(&d->rt, &st);
        CHECK(st.phase == TFA_PHASE_DOWNLOADING && st.download_offset == recorded &&
                  st.download_size == payload,
              "%s: after reboot phase %u offset %u (want %u)", name, st.phase, st.download_offset, recorded);
    }
    CHECK_RC(tfa_install_begin(&d->rt, pkg.bytes, TFA_MANIFEST_SIZE), 0, "same manifest resumes");
    CHECK(prv_download_offset(d) == recorded, "begin again keeps the resume offset");
    CHECK_RC(tfa_install_chunk(&d->rt, sent, pkg.bytes + TFA_MANIFEST_SIZE + sent, 1), -TFA_ERR_BAD_OFFSET,
             "chunk at the pre-reboot offset");
    CHECK_RC(prv_send(d, &pkg, 11, UINT32_MAX), 0, "rest");
    /* Reboot with the whole payload received: end still completes from the recorded final boundary. */
    CHECK_RC(tv_device_boot(d), 0, "reboot before end");
    CHECK(prv_download_offset(d) == payload, "%s: complete download resumes at its end", name);
    CHECK_RC(prv_finish(d), 0, name);
    prv_check_new_model(d, update, name);
    tv_device_free(d);
    free(d);
    free(pkg.bytes);
}

/* A flash failure in a chunk (power back without a reboot): the offset rewinds to the last boundary. */
static void prv_test_rewind(const prv_file_t *update)
{
    prv_file_t pkg = prv_load("compressed_good.tfpkg");
    tv_device_t *d = calloc(1, sizeof(*d));
    if (pkg.bytes == NULL || d == NULL || prv_setup(d, 0, 1, 1) != 0) {
        free(pkg.bytes);
        free(d);
        return;
    }
    uint32_t payload = pkg.len - TFA_MANIFEST_SIZE;
    CHECK_RC(tfa_install_begin(&d->rt, pkg.bytes, pkg.len), 0, "begin");
    CHECK_RC(prv_send(d, &pkg, 100, payload / 2u), 0, "first half");
    uint32_t recorded = d->rt.state.download_offset;
    tfa_flash_host_cut_after(&d->fh, 1, TFA_CUT_HALF, 5);
    int rc = prv_send(d, &pkg, 100, UINT32_MAX);
    CHECK(rc == -TFA_ERR_FLASH_IO, "the failed chunk reports FLASH_IO (%d)", rc);
    tfa_flash_host_power_on(&d->fh);
    uint32_t now = prv_download_offset(d);
    CHECK(now == d->rt.state.download_offset && now >= recorded, "rewound to %u (recorded %u, now %u)",
          now, recorded, d->rt.state.download_offset);
    CHECK_RC(prv_send(d, &pkg, 100, UINT32_MAX), 0, "send again from the boundary");
    CHECK_RC(prv_finish(d), 0, "finish after the rewind");
    prv_check_new_model(d, update, "after a rewind");
    tv_device_free(d);
    free(d);
    free(pkg.bytes);
}

/* Refused packages: nothing of the active slot changes, the device stays on the old model. */
static void prv_test_refusal(const char *name, int want, int stage, uint32_t chunk)
{
    prv_file_t pkg = prv_load(name);
    tv_device_t *d = calloc(1, sizeof(*d));
    if (pkg.bytes == NULL || d == NULL || prv_setup(d, 0, 1, 1) != 0) {
        free(pkg.bytes);
        free(d);
        return;
    }
    uint8_t *active = malloc(d->cfg.slot_size);
    memcpy(active, d->fh.mem + tfa_slot_address(&d->rt, 0), d->cfg.slot_size);
    int rc = tfa_install_begin(&d->rt, pkg.bytes, pkg.len);
    int at = 0;
    if (rc == 0) {
        at = 1;
        rc = prv_send(d, &pkg, chunk, UINT32_MAX);
    }
    if (rc == 0) {
        at = 2;
        rc = tfa_install_end(&d->rt);
    }
    CHECK(rc == want && at == stage, "%s chunk %u: got %d (%s) at stage %d, want %d at %d", name, chunk, rc,
          tfa_err_name(rc), at, want, stage);
    tfa_status_t st;
    tfa_runtime_status(&d->rt, &st);
    CHECK(st.phase == TFA_PHASE_IDLE && st.last_error == (uint8_t)-want && st.target_slot == 0xFF,
          "%s: phase %u last_error %u", name, st.phase, st.last_error);
    uint32_t seq = 0;
    CHECK_RC(tv_check_active_model(d, &seq), 0, "old model intact");
    CHECK(seq == OLD_SEQ && memcmp(active, d->fh.mem + tfa_slot_address(&d->rt, 0), d->cfg.slot_size) == 0,
          "%s: active slot changed", name);
    CHECK_RC(tv_device_boot(d), 0, "reboot");
    tfa_runtime_status(&d->rt, &st);
    CHECK(st.phase == TFA_PHASE_IDLE && st.active_slot == 0, "%s: after reboot", name);
    /* The same slot still takes a good package. */
    CHECK_RC(tv_install_vector(&d->rt, "delta_good.tfpkg", 64), 0, "good delta after a refusal");
    free(active);
    tv_device_free(d);
    free(d);
    free(pkg.bytes);
}

/* No workspace: encodings 1 and 2 refused with FIELD_RANGE, raw still installs; a download recorded by
 * a firmware with a decoder is given up by one without. Delta without an active model: WRONG_BASE. */
static void prv_test_without_decoder(const prv_file_t *update)
{
    tv_device_t *d = calloc(1, sizeof(*d));
    if (d == NULL || prv_setup(d, 0, 0, 1) != 0) {
        free(d);
        return;
    }
    const char *names[] = {"delta_good.tfpkg", "compressed_good.tfpkg", "delta_wrong_base.tfpkg"};
    for (int i = 0; i < 3; i++) {
        prv_file_t pkg = prv_load(names[i]);
        if (pkg.bytes != NULL) {
            /* The policy runs first: a wrong base is still WRONG_BASE. */
            int want = i == 2 ? -TFA_ERR_WRONG_BASE : -TFA_ERR_FIELD_RANGE;
            CHECK_RC(tfa_install_begin(&d->rt, pkg.bytes, pkg.len), want, names[i]);
        }
        free(pkg.bytes);
    }
    /* Begun with a workspace, rebooted without one. */
    prv_file_t pkg = prv_load("compressed_good.tfpkg");
    d->cfg.delta_workspace = &g_workspace;
    CHECK_RC(tv_device_boot(d), 0, "boot with a decoder");
    CHECK_RC(tfa_install_begin(&d->rt, pkg.bytes, pkg.len), 0, "begin");
    CHECK_RC(prv_send(d, &pkg, 200, 700), 0, "part");
    d->cfg.delta_workspace = NULL;
    CHECK_RC(tv_device_boot(d), 0, "boot without a decoder");
    tfa_status_t st;
    tfa_runtime_status(&d->rt, &st);
    CHECK(st.phase == TFA_PHASE_IDLE && st.last_error == TFA_ERR_FIELD_RANGE && st.active_slot == 0,
          "download without a decoder: phase %u last_error %u", st.phase, st.last_error);
    CHECK_RC(tv_install_vector(&d->rt, "good.tfpkg", 256), 0, "raw install without a decoder");
    free(pkg.bytes);
    tv_device_free(d);

    /* A fresh device: a delta has no base, a compressed model installs. */
    if (prv_setup(d, 0, 1, 0) == 0) {
        CHECK_RC(tv_install_vector(&d->rt, "delta_good.tfpkg", 64), -TFA_ERR_WRONG_BASE, "delta, no model");
        CHECK_RC(tv_install_vector(&d->rt, "compressed_good.tfpkg", 64), 0, "compressed, no model");
        uint32_t seq = 0;
        uint32_t len = 0;
        const uint8_t *model = tfa_active_model(&d->rt, &len);
        CHECK(tv_check_active_model(d, &seq) == 0 && seq == NEW_SEQ && len == update->len &&
                  memcmp(model, update->bytes, len) == 0,
              "compressed install on an empty device");
        tv_device_free(d);
    }
    free(d);
}

/* A record whose decoder checkpoint disagrees with its download offset: the download is given up. */
static void prv_test_bad_checkpoint(void)
{
    prv_file_t pkg = prv_load("delta_good.tfpkg");
    tv_device_t *d = calloc(1, sizeof(*d));
    if (pkg.bytes == NULL || d == NULL || prv_setup(d, 0, 1, 1) != 0) {
        free(pkg.bytes);
        free(d);
        return;
    }
    CHECK_RC(tfa_install_begin(&d->rt, pkg.bytes, pkg.len), 0, "begin");
    CHECK_RC(prv_send(d, &pkg, 40, 60), 0, "part");
    tfa_state_t bad = d->rt.state;
    bad.download_offset += 1u;
    CHECK_RC(tfa_state_save(&d->rt.log, &bad), 0, "write an inconsistent record");
    CHECK_RC(tv_device_boot(d), 0, "boot");
    tfa_status_t st;
    tfa_runtime_status(&d->rt, &st);
    CHECK(st.phase == TFA_PHASE_IDLE && st.last_error == TFA_ERR_STATE_CORRUPT && st.active_slot == 0,
          "inconsistent checkpoint: phase %u last_error %u", st.phase, st.last_error);
    CHECK_RC(tv_install_vector(&d->rt, "delta_good.tfpkg", 40), 0, "install after the dropped download");
    tv_device_free(d);
    free(d);
    free(pkg.bytes);
}

int main(void)
{
    prv_file_t update = prv_load("model_update.tflite");
    if (update.bytes == NULL) {
        return 1;
    }
    prv_test_installs("delta_good.tfpkg", &update);
    prv_test_installs("compressed_good.tfpkg", &update);
    prv_test_resume("delta_good.tfpkg", &update);
    prv_test_resume("compressed_good.tfpkg", &update);
    /* the same update in delta format version 2 (weight and word runs) */
    prv_test_installs("delta_v2_good.tfpkg", &update);
    prv_test_installs("compressed_v2_good.tfpkg", &update);
    prv_test_resume("delta_v2_good.tfpkg", &update);
    prv_test_resume("compressed_v2_good.tfpkg", &update);
    /* and in format version 3 (table runs) */
    prv_test_installs("delta_v3_good.tfpkg", &update);
    prv_test_resume("delta_v3_good.tfpkg", &update);
    prv_test_installs("delta_v4_good.tfpkg", &update);
    prv_test_resume("delta_v4_good.tfpkg", &update);
    /* and in format version 5 (ladder numbers) */
    prv_test_installs("delta_v5_good.tfpkg", &update);
    prv_test_resume("delta_v5_good.tfpkg", &update);
    /* and in format version 6 (adaptive frequency symbols) */
    prv_test_installs("delta_v6_good.tfpkg", &update);
    prv_test_resume("delta_v6_good.tfpkg", &update);
    prv_test_rewind(&update);
    prv_test_refusal("delta_wrong_base.tfpkg", -TFA_ERR_WRONG_BASE, 0, 64);
    prv_test_refusal("delta_corrupt_stream.tfpkg", -TFA_ERR_DELTA_CORRUPT, 1, 1);
    prv_test_refusal("delta_corrupt_stream.tfpkg", -TFA_ERR_DELTA_CORRUPT, 1, 1u << 20);
    prv_test_refusal("delta_wrong_output.tfpkg", -TFA_ERR_DIGEST_MISMATCH, 2, 9);
    prv_test_without_decoder(&update);
    prv_test_bad_checkpoint();
    free(update.bytes);
    if (test_failures != 0) {
        fprintf(stderr, "test_runtime_delta: %d checks failed\n", test_failures);
        return 1;
    }
    printf("test_runtime_delta: ok (workspace %zu bytes, tfa_runtime_t %zu bytes)\n", sizeof(tfa_delta_t),
           sizeof(tfa_runtime_t));
    return 0;
}
