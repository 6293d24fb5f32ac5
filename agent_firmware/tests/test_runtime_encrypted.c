/* Encrypted installs through tfa/runtime.h (docs/PROTOCOL.md section 6), with the packages of
 * tests/vectors/encrypted (make_encrypted_packages.py): key wrap after begin, streaming decryption into the
 * slot (raw, delta and compressed), the refusals (KEY_UNWRAP, NOT_ENCRYPTED, MODEL_RAM_TOO_SMALL, chunks
 * before the key, tampered ciphertext before activation), a resume after a reboot, which needs the wrap
 * again, and the model kept encrypted at rest in its slot. */
#include <stdlib.h>
#include <string.h>

#include "tfa/x25519.h"
#include "tv_support.h"

typedef struct {
    uint8_t *pkg;
    uint32_t len;
    uint8_t *wrap;
    uint32_t wrap_len;
} prv_vec_t;

static tfa_delta_t g_workspace;
static uint8_t g_private[32];
static uint8_t g_public[32];

static prv_vec_t prv_load(const char *stem)
{
    char name[96];
    prv_vec_t v;
    snprintf(name, sizeof(name), "encrypted/%s.tfpkg", stem);
    v.pkg = tv_read_vector(name, &v.len);
    snprintf(name, sizeof(name), "encrypted/%s.wrap", stem);
    v.wrap = tv_read_vector(name, &v.wrap_len);
    CHECK(v.pkg != NULL && v.wrap != NULL && v.wrap_len == TFA_KEY_WRAP_SIZE, "vectors of %s", stem);
    return v;
}

static void prv_free(prv_vec_t *v)
{
    free(v->pkg);
    free(v->wrap);
}

/* A device running good_active.tfpkg (clear, sequence 5) with the test device key. */
static int prv_device(tv_device_t *d, int with_key)
{
    if (tv_device_init(d, 0) != 0) {
        test_failures++;
        return -1;
    }
    d->cfg.delta_workspace = &g_workspace;
    if (with_key) {
        d->cfg.encryption_private = g_private;
        d->cfg.encryption_public = g_public;
    }
    CHECK_RC(tv_device_boot(d), 0, "boot");
    CHECK_RC(tv_install_vector(&d->rt, "good_active.tfpkg", 512), 0, "old model");
    return 0;
}

static int prv_chunks(tfa_runtime_t *rt, const prv_vec_t *v, uint32_t from, uint32_t to, uint32_t chunk)
{
    for (uint32_t off = from; off < to; off += chunk) {
        uint32_t n = to - off < chunk ? to - off : chunk;
        int rc = tfa_install_chunk(rt, off, v->pkg + TFA_MANIFEST_SIZE + off, n);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

static int prv_install(tv_device_t *d, const prv_vec_t *v, uint32_t chunk)
{
    tfa_runtime_t *rt = &d->rt;
    int rc = tfa_install_begin(rt, v->pkg, v->len);
    rc = rc != 0 ? rc : tfa_install_key(rt, v->wrap);
    rc = rc != 0 ? rc : prv_chunks(rt, v, 0, v->len - TFA_MANIFEST_SIZE, chunk);
    rc = rc != 0 ? rc : tfa_install_end(rt);
    rc = rc != 0 ? rc : tfa_activate(rt);
    rc = rc != 0 ? rc : tfa_selftest(rt);
    return rc != 0 ? rc : tfa_confirm(rt);
}

/* The active model equals the clear model file byte for byte. */
static void prv_check_model(const tv_device_t *d, const char *model_file, uint32_t seq)
{
    uint32_t want_len = 0;
    uint8_t *want = tv_read_vector(model_file, &want_len);
    uint32_t len = 0;
    const uint8_t *model = tfa_active_model(&d->rt, &len);
    uint32_t got_seq = 0;
    CHECK_RC(tv_check_active_model(d, &got_seq), 0, "active model authentic");
    CHECK(got_seq == seq, "active sequence %u, want %u", got_seq, seq);
    CHECK(want != NULL && model != NULL && len == want_len && memcmp(model, want, len) == 0,
          "slot holds the clear %s", model_file);
    free(want);
}

static void prv_test_good_installs(void)
{
    static const struct {
        const char *stem;
        const char *model;
        uint32_t chunk;
    } cases[] = {{"good", "model.tflite", 1000}, {"good", "model.tflite", 7},
                 {"delta_good", "model_update.tflite", 5}, {"compressed_good", "model_update.tflite", 300}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        tv_device_t d;
        if (prv_device(&d, 1) != 0) {
            return;
        }
        prv_vec_t v = prv_load(cases[i].stem);
        CHECK_RC(prv_install(&d, &v, cases[i].chunk), 0, cases[i].stem);
        prv_check_model(&d, cases[i].model, 6);
        /* after a reboot too */
        CHECK_RC(tv_device_boot(&d), 0, "reboot");
        prv_check_model(&d, cases[i].model, 6);
        prv_free(&v);
        tv_device_free(&d);
    }
}

static void prv_test_refusals(void)
{
    tv_device_t d;
    if (prv_device(&d, 1) != 0) {
        return;
    }
    tfa_runtime_t *rt = &d.rt;
    prv_vec_t v = prv_load("good");
    prv_vec_t other = prv_load("delta_good");
    uint32_t payload = v.len - TFA_MANIFEST_SIZE;
    tfa_status_t st;
    /* no download: the key has nothing to open */
    CHECK_RC(tfa_install_key(rt, v.wrap), -TFA_ERR_BAD_STATE, "key without a download");
    CHECK_RC(tfa_install_begin(rt, v.pkg, v.len), 0, "begin");
    CHECK_RC(tfa_install_chunk(rt, 0, v.pkg + TFA_MANIFEST_SIZE, 16), -TFA_ERR_BAD_STATE, "chunk before key");
    /* a wrap for another package, a changed byte, the wrap of another device */
    CHECK_RC(tfa_install_key(rt, other.wrap), -TFA_ERR_KEY_UNWRAP, "wrap of another package");
    uint8_t bad[TFA_KEY_WRAP_SIZE];
    for (uint32_t at = 0; at < TFA_KEY_WRAP_SIZE; at += 19u) {
        memcpy(bad, v.wrap, sizeof(bad));
        bad[at] ^= 0x40u;
        CHECK_RC(tfa_install_key(rt, bad), -TFA_ERR_KEY_UNWRAP, "altered wrap");
    }
    tfa_runtime_status(rt, &st);
    CHECK(st.phase == TFA_PHASE_DOWNLOADING && st.last_error == TFA_ERR_KEY_UNWRAP, "download kept, error %u",
          st.last_error);
    CHECK_RC(tfa_install_chunk(rt, 0, v.pkg + TFA_MANIFEST_SIZE, 16), -TFA_ERR_BAD_STATE, "still no key");
    /* the good wrap, then a tampered ciphertext byte: refused at end, never activated */
    CHECK_RC(tfa_install_key(rt, v.wrap), 0, "good wrap");
    uint8_t *tampered = malloc(v.len);
    memcpy(tampered, v.pkg, v.len);
    tampered[TFA_MANIFEST_SIZE + payload / 2u] ^= 0x01u;
    prv_vec_t t = {tampered, v.len, v.wrap, v.wrap_len};
    CHECK_RC(prv_chunks(rt, &t, 0, payload, 512), 0, "tampered chunks are accepted as they come");
    CHECK_RC(tfa_install_end(rt), -TFA_ERR_DIGEST_MISMATCH, "tampered ciphertext");
    CHECK_RC(tfa_activate(rt), -TFA_ERR_BAD_STATE, "nothing to activate");
    uint32_t seq = 0;
    CHECK_RC(tv_check_active_model(&d, &seq), 0, "old model still active");
    CHECK(seq == 5u, "old model active, seq %u", seq);
    /* tampered again, but resumed after a reboot: the model digest refuses it */
    CHECK_RC(tfa_install_begin(rt, v.pkg, v.len), 0, "begin");
    CHECK_RC(tfa_install_key(rt, v.wrap), 0, "key");
    CHECK_RC(prv_chunks(rt, &t, 0, 1024, 512), 0, "first half");
    CHECK_RC(tv_device_boot(&d), 0, "reboot mid-download");
    tfa_runtime_status(rt, &st);
    CHECK(st.phase == TFA_PHASE_DOWNLOADING && st.download_offset == 1024u, "resume at %u", st.download_offset);
    CHECK_RC(tfa_install_chunk(rt, 1024, t.pkg + TFA_MANIFEST_SIZE + 1024, 16), -TFA_ERR_BAD_STATE,
             "the key is gone after a reboot");
    CHECK_RC(tfa_install_begin(rt, v.pkg, v.len), 0, "begin resumes");
    CHECK_RC(tfa_install_key(rt, v.wrap), 0, "key again");
    CHECK_RC(prv_chunks(rt, &t, 1024, payload, 100), 0, "rest");
    CHECK_RC(tfa_install_end(rt), -TFA_ERR_DIGEST_MISMATCH, "tampered ciphertext after a resume");
    /* the clear one resumed after a reboot installs */
    CHECK_RC(tfa_install_begin(rt, v.pkg, v.len), 0, "begin");
    CHECK_RC(tfa_install_key(rt, v.wrap), 0, "key");
    CHECK_RC(prv_chunks(rt, &v, 0, 1500, 300), 0, "part");
    CHECK_RC(tv_device_boot(&d), 0, "reboot mid-download");
    CHECK_RC(tfa_install_begin(rt, v.pkg, v.len), 0, "begin resumes");
    CHECK_RC(tfa_install_key(rt, v.wrap), 0, "key again");
    tfa_runtime_status(rt, &st);
    CHECK_RC(prv_chunks(rt, &v, st.download_offset, payload, 333), 0, "rest");
    CHECK_RC(tfa_install_end(rt), 0, "end after a resume");
    prv_free(&v);
    prv_free(&other);
    free(tampered);
    tv_device_free(&d);
}

static void prv_test_policy(void)
{
    prv_vec_t v = prv_load("good");
    uint32_t clear_len = 0;
    uint8_t *clear = tv_read_vector("good.tfpkg", &clear_len);
    tv_device_t d;
    /* no device key: an encrypted package is refused at begin */
    if (prv_device(&d, 0) == 0) {
        CHECK_RC(tfa_install_begin(&d.rt, v.pkg, v.len), -TFA_ERR_KEY_UNWRAP, "device without a key");
        tv_device_free(&d);
    }
    /* another device's key: the wrap does not open */
    if (prv_device(&d, 1) == 0) {
        uint32_t len = 0;
        uint8_t *other = tv_read_vector("encrypted/other.key", &len);
        uint8_t other_pub[32];
        tfa_x25519_base(other_pub, other);
        d.cfg.encryption_private = other;
        d.cfg.encryption_public = other_pub;
        CHECK_RC(tfa_install_begin(&d.rt, v.pkg, v.len), 0, "begin");
        CHECK_RC(tfa_install_key(&d.rt, v.wrap), -TFA_ERR_KEY_UNWRAP, "wrong device key");
        free(other);
        tv_device_free(&d);
    }
    /* require_encryption: a clear package is refused, the encrypted one installs */
    if (prv_device(&d, 1) == 0) {
        d.cfg.require_encryption = 1;
        CHECK_RC(tfa_install_begin(&d.rt, clear, clear_len), -TFA_ERR_NOT_ENCRYPTED, "clear package");
        tfa_status_t st;
        tfa_runtime_status(&d.rt, &st);
        CHECK(st.phase == TFA_PHASE_IDLE && st.last_error == TFA_ERR_NOT_ENCRYPTED, "refused before writing");
        CHECK_RC(prv_install(&d, &v, 512), 0, "encrypted package");
        prv_check_model(&d, "model.tflite", 6);
        tv_device_free(&d);
    }
    /* a fixed model RAM smaller than the model: refused before writing (it could never be run); one
     * byte more and the same package installs, and the clear package needs no model RAM at all */
    if (prv_device(&d, 1) == 0) {
        tfa_manifest_t m;
        CHECK_RC(tfa_manifest_parse(v.pkg, v.len, d.cfg.keys, d.cfg.key_count, &m), 0, "manifest");
        d.model_ram.size = m.model_size - 1u;
        uint32_t ops = tfa_flash_host_op_count(&d.fh);
        CHECK_RC(tfa_install_begin(&d.rt, v.pkg, v.len), -TFA_ERR_MODEL_RAM_TOO_SMALL, "model RAM too small");
        tfa_status_t st;
        tfa_runtime_status(&d.rt, &st);
        CHECK(st.phase == TFA_PHASE_IDLE && st.last_error == TFA_ERR_MODEL_RAM_TOO_SMALL &&
                  tfa_flash_host_op_count(&d.fh) == ops,
              "refused before writing");
        d.model_ram.size = m.model_size;
        CHECK_RC(prv_install(&d, &v, 512), 0, "encrypted package that fits the model RAM");
        prv_check_model(&d, "model.tflite", 6);
        tv_device_free(&d);
    }
    if (prv_device(&d, 1) == 0) {
        d.model_ram.size = 16u;
        CHECK_RC(tv_install_confirm(&d.rt, clear, clear_len, 512), 0, "clear package, tiny model RAM");
        tv_device_free(&d);
    }
    free(clear);
    prv_free(&v);
}

/* Encryption at rest (PROTOCOL 6.6): after encrypted installs no 32-byte window of either clear model
 * occurs anywhere in a dump of the flash, while the runtime still verifies, self-tests, reboots into and
 * rolls back to them (decrypted into RAM); a delta's base is read back through the key stream. A device
 * whose model came in clear shows it in the same dump, so the check can fail. */
static void prv_test_at_rest(void)
{
    uint32_t len0 = 0;
    uint32_t len1 = 0;
    uint8_t *model = tv_read_vector("model.tflite", &len0);
    uint8_t *update = tv_read_vector("model_update.tflite", &len1);
    tv_device_t d;
    if (model == NULL || update == NULL || prv_device(&d, 1) != 0) {
        test_failures++;
        free(model);
        free(update);
        return;
    }
    CHECK(tv_flash_shows(&d, model, len0) == 1, "a clear install shows its model in the dump");
    tv_device_free(&d);

    if (tv_device_init(&d, 0) == 0) {
        d.cfg.delta_workspace = &g_workspace;
        d.cfg.encryption_private = g_private;
        d.cfg.encryption_public = g_public;
        CHECK_RC(tv_device_boot(&d), 0, "boot");
        prv_vec_t base = prv_load("good_active");
        prv_vec_t delta = prv_load("delta_good");
        CHECK_RC(prv_install(&d, &base, 100), 0, "encrypted base");
        prv_check_model(&d, "model.tflite", 5);
        CHECK(tv_flash_shows(&d, model, len0) == 0, "the dump shows the encrypted base model");
        CHECK_RC(prv_install(&d, &delta, 9), 0, "encrypted delta on an encrypted base");
        prv_check_model(&d, "model_update.tflite", 6);
        CHECK_RC(tv_device_boot(&d), 0, "reboot");
        prv_check_model(&d, "model_update.tflite", 6);
        CHECK_RC(tfa_selftest(&d.rt), 0, "self-test after the reboot");
        CHECK(tv_flash_shows(&d, model, len0) == 0 && tv_flash_shows(&d, update, len1) == 0,
              "the dump shows a model installed encrypted");
        CHECK_RC(tfa_revert(&d.rt), 0, "rollback to the encrypted base");
        prv_check_model(&d, "model.tflite", 5);
        /* without the model RAM the runtime still verifies the model, but cannot hand it to the engine */
        d.cfg.model_ram = NULL;
        CHECK_RC(tfa_selftest(&d.rt), 0, "integrity check without model RAM");
        uint32_t len = 1;
        CHECK(tfa_active_model(&d.rt, &len) == NULL && len == 0u, "no model pointer without model RAM");
        prv_free(&base);
        prv_free(&delta);
        tv_device_free(&d);
    } else {
        test_failures++;
    }
    free(model);
    free(update);
}

int main(void)
{
    uint32_t len = 0;
    uint8_t *key = tv_read_vector("encrypted/device.key", &len);
    if (key == NULL || len != 32u) {
        fprintf(stderr, "cannot read encrypted/device.key in %s\n", tv_vector_dir());
        return 1;
    }
    memcpy(g_private, key, 32);
    free(key);
    tfa_x25519_base(g_public, g_private);
    prv_test_good_installs();
    prv_test_refusals();
    prv_test_policy();
    prv_test_at_rest();
    printf("test_runtime_encrypted: sizeof(tfa_runtime_t) = %zu bytes\n", sizeof(tfa_runtime_t));
    return test_report("test_runtime_encrypted");
}
