/* Golden vectors (tests/vectors/index.txt) against the C runtime, in two layers:
 *  - manifest layer: tfa_manifest_parse gives the vector's code for format/signature/range errors and
 *    0 for everything else;
 *  - device layer: a device configured from device.txt, with good_active.tfpkg installed and confirmed,
 *    is fed the whole package (begin, chunks, end, activate, selftest, confirm) and must fail with the
 *    expected code at the right step (parse and policy codes at begin, SIZE_MISMATCH / DIGEST_MISMATCH
 *    during the download, SELFTEST_FAILED at selftest with the inference engine as the hook), leaving the
 *    previous model active and intact; OK vectors end confirmed.
 * Plus decoding checks and truncation / bit-flip sweeps on good.tfpkg. */
#include <stdlib.h>
#include <string.h>

#include "test_util.h"
#include "tfa/engine.h"
#include "tv_support.h"

#define CHUNK 512u

static tfa_engine_t g_engine;
static _Alignas(16) uint8_t g_arena[32768];
static tfa_engine_selftest_ctx_t g_selftest = {&g_engine, g_arena, sizeof(g_arena)};

static int prv_is_manifest_code(int code)
{
    return code == TFA_ERR_TRUNCATED || code == TFA_ERR_BAD_MAGIC || code == TFA_ERR_UNSUPPORTED_FORMAT ||
           code == TFA_ERR_UNKNOWN_KEY || code == TFA_ERR_BAD_SIGNATURE || code == TFA_ERR_FIELD_RANGE;
}

/* A device after the vectors' setup: good_active.tfpkg installed and confirmed. */
static int prv_setup_device(tv_device_t *d)
{
    if (tv_device_init(d, 0) != 0) {
        return -1;
    }
    d->cfg.selftest_hook = tfa_engine_selftest_hook;
    d->cfg.selftest_ctx = &g_selftest;
    CHECK_RC(tv_device_boot(d), 0, "boot fresh device");
    CHECK_RC(tv_install_vector(&d->rt, "good_active.tfpkg", CHUNK), 0, "setup install");
    tfa_status_t st;
    tfa_runtime_status(&d->rt, &st);
    uint32_t seq = 0;
    CHECK_RC(tv_check_active_model(d, &seq), 0, "setup model");
    CHECK(st.security_floor == d->expect_floor, "floor %u", st.security_floor);
    CHECK(seq == d->expect_active_sequence, "sequence %u", seq);
    return 0;
}

/* The device still runs the setup model, untouched, after a refused package. */
static void prv_check_unchanged(tv_device_t *d, const char *file)
{
    for (int pass = 0; pass < 2; pass++) {
        tfa_status_t st;
        tfa_runtime_status(&d->rt, &st);
        uint32_t seq = 0;
        CHECK_RC(tv_check_active_model(d, &seq), 0, file);
        CHECK(seq == d->expect_active_sequence && st.phase != TFA_PHASE_TRIAL &&
                  st.security_floor == d->expect_floor,
              "%s (pass %d): seq %u phase %u floor %u", file, pass, seq, st.phase, st.security_floor);
        CHECK_RC(tv_device_boot(d), 0, "reboot");
    }
}

static void prv_device_layer(const tv_index_entry_t *e, const uint8_t *pkg, uint32_t len)
{
    tv_device_t *d = calloc(1, sizeof(*d));
    if (d == NULL || prv_setup_device(d) != 0) {
        CHECK(0, "device setup for %s", e->file);
        free(d);
        return;
    }
    tfa_runtime_t *rt = &d->rt;
    int want = -e->code;
    if (prv_is_manifest_code(e->code) || strcmp(e->layer, "policy") == 0) {
        CHECK_RC(tfa_install_begin(rt, pkg, len < TFA_MANIFEST_SIZE ? len : TFA_MANIFEST_SIZE), want, e->file);
        tfa_status_t st;
        tfa_runtime_status(rt, &st);
        CHECK(st.last_error == e->code && st.phase == TFA_PHASE_IDLE, "%s: last_error %u phase %u", e->file,
              st.last_error, st.phase);
        prv_check_unchanged(d, e->file);
    } else if (e->code == TFA_ERR_SIZE_MISMATCH || e->code == TFA_ERR_DIGEST_MISMATCH) {
        CHECK_RC(tv_download(rt, pkg, len, CHUNK), want, e->file);
        CHECK_RC(tfa_activate(rt), -TFA_ERR_BAD_STATE, "activate after a failed download");
        prv_check_unchanged(d, e->file);
    } else if (strcmp(e->layer, "selftest") == 0) {
        CHECK_RC(tv_download(rt, pkg, len, CHUNK), 0, e->file);
        CHECK_RC(tfa_activate(rt), 0, e->file);
        CHECK_RC(tfa_selftest(rt), want, e->file);
        CHECK_RC(tfa_confirm(rt), -TFA_ERR_BAD_STATE, "confirm after a failed self-test");
        prv_check_unchanged(d, e->file);
        tfa_status_t st;
        tfa_runtime_status(rt, &st);
        CHECK(st.last_error == e->code && !st.slots[1 - st.active_slot].valid,
              "%s: failed trial slot must be invalid", e->file);
    } else {
        tfa_manifest_t m;
        CHECK_RC(tfa_manifest_parse(pkg, len, &d->key, 1, &m), 0, e->file);
        CHECK_RC(tv_install_confirm(rt, pkg, len, CHUNK), want, e->file);
        for (int pass = 0; pass < 2; pass++) {
            uint32_t seq = 0;
            tfa_status_t st;
            tfa_runtime_status(rt, &st);
            CHECK_RC(tv_check_active_model(d, &seq), 0, e->file);
            CHECK(seq == m.sequence && st.phase == TFA_PHASE_IDLE && st.security_floor == m.security_counter &&
                      st.slots[0].valid && st.slots[1].valid,
                  "%s: seq %u phase %u", e->file, seq, st.phase);
            CHECK_RC(tv_device_boot(d), 0, "reboot");
        }
    }
    tv_device_free(d);
    free(d);
}

static void prv_vectors(const tfa_trusted_key_t *key)
{
    static tv_index_entry_t entries[256];
    int n = tv_load_index(entries, 256);
    CHECK(n > 0, "cannot load %s/index.txt", tv_vector_dir());
    int seen_layers[4] = {0, 0, 0, 0};
    for (int i = 0; i < n; i++) {
        const tv_index_entry_t *e = &entries[i];
        uint32_t len;
        uint8_t *pkg = tv_read_vector(e->file, &len);
        CHECK(pkg != NULL, "missing vector %s", e->file);
        if (pkg == NULL) {
            continue;
        }
        tfa_manifest_t m;
        int want = prv_is_manifest_code(e->code) ? -e->code : 0;
        CHECK_RC(tfa_manifest_parse(pkg, len, key, 1, &m), want, e->file);
        prv_device_layer(e, pkg, len);
        seen_layers[strcmp(e->layer, "none") == 0 ? 0 : strcmp(e->layer, "parse") == 0 ? 1
                     : strcmp(e->layer, "policy") == 0 ? 2 : 3]++;
        free(pkg);
    }
    printf("test_manifest: %d vectors (%d ok, %d parse, %d policy, %d selftest)\n", n, seen_layers[0],
           seen_layers[1], seen_layers[2], seen_layers[3]);
}

static void prv_decode_good(const tfa_trusted_key_t *key)
{
    uint32_t len;
    uint8_t *pkg = tv_read_vector("good.tfpkg", &len);
    uint8_t *model = NULL;
    uint32_t model_len = 0;
    CHECK(pkg != NULL && len > TFA_MANIFEST_SIZE, "good.tfpkg");
    if (pkg == NULL) {
        return;
    }
    tfa_manifest_t m;
    CHECK_RC(tfa_manifest_parse(pkg, len, key, 1, &m), 0, "good");
    CHECK(strcmp(m.model_name, "vector-kws") == 0, "name %s", m.model_name);
    CHECK(m.sequence == 6 && m.security_counter == 3 && m.hardware_class == 7 &&
              m.min_runtime_version == TFA_RUNTIME_VERSION && m.payload_encoding == TFA_ENC_RAW,
          "fields seq %u counter %u hw %u", m.sequence, m.security_counter, m.hardware_class);
    CHECK(m.payload_size == len - TFA_MANIFEST_SIZE && m.model_size == m.payload_size, "sizes");
    CHECK(m.created_at == 1767225600u, "created_at");
    CHECK(memcmp(m.key_id, key->key_id, 8) == 0, "key id");
    model = tv_read_vector("model.tflite", &model_len);
    CHECK(model != NULL && model_len == m.model_size && memcmp(model, pkg + TFA_MANIFEST_SIZE, model_len) == 0,
          "payload is model.tflite");
    uint8_t want_sha[32];
    CHECK(test_unhex_exact("092cea88fac395fab9c6ebdb69bfe8506a6e4a8c6e8bed74fc3a4ce5934571ee", want_sha, 32) == 0 &&
              memcmp(m.model_sha256, want_sha, 32) == 0,
          "model_sha256");
    /* Only the manifest is needed: exactly 292 bytes parse. */
    CHECK_RC(tfa_manifest_parse(pkg, TFA_MANIFEST_SIZE, key, 1, &m), 0, "manifest alone");
    /* Every shorter length is TRUNCATED. */
    for (uint32_t cut = 0; cut < TFA_MANIFEST_SIZE; cut++) {
        CHECK_RC(tfa_manifest_parse(pkg, cut, key, 1, &m), -TFA_ERR_TRUNCATED, "truncated");
    }
    CHECK_RC(tfa_manifest_parse(NULL, 0, key, 1, &m), -TFA_ERR_TRUNCATED, "NULL buffer");
    CHECK_RC(tfa_manifest_parse(pkg, len, key, 0, &m), -TFA_ERR_UNKNOWN_KEY, "empty trust store");
    CHECK_RC(tfa_manifest_parse(pkg, len, NULL, 0, &m), -TFA_ERR_UNKNOWN_KEY, "no trust store");
    /* A second trusted key before the right one: rotation. */
    tfa_trusted_key_t two[2];
    memset(&two[0], 0x5A, sizeof(two[0]));
    two[1] = *key;
    CHECK_RC(tfa_manifest_parse(pkg, len, two, 2, &m), 0, "second key of two");
    /* Flipping any bit of any manifest byte is never accepted. */
    int accepted = 0;
    for (uint32_t i = 0; i < TFA_MANIFEST_SIZE; i++) {
        uint8_t bit = (uint8_t)(1u << (i % 8u));
        pkg[i] ^= bit;
        if (tfa_manifest_parse(pkg, len, key, 1, &m) == 0) {
            accepted++;
            fprintf(stderr, "flip of byte %u accepted\n", i);
        }
        pkg[i] ^= bit;
    }
    CHECK(accepted == 0, "%d bit flips accepted", accepted);
    free(model);
    free(pkg);
}

int main(void)
{
    tv_device_t *d = calloc(1, sizeof(*d));
    if (d == NULL || tv_device_init(d, 0) != 0) {
        fprintf(stderr, "test_manifest: cannot load the vectors from %s\n", tv_vector_dir());
        free(d);
        return 1;
    }
    prv_decode_good(&d->key);
    prv_vectors(&d->key);
    tv_device_free(d);
    free(d);
    return test_report("test_manifest");
}
