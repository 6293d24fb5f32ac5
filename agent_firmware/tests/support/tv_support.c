#include "tv_support.h"

#include <stdlib.h>
#include <string.h>

#include "tfa/errors.h"
#include "tfa/sha256.h"
#include "test_util.h"

const char *tv_vector_dir(void)
{
    const char *env = getenv("TFA_VECTOR_DIR");
    return (env != NULL && env[0] != '\0') ? env : "../../tests/vectors";
}

uint8_t *tv_read_vector(const char *name, uint32_t *len)
{
    char path[512];
    *len = 0;
    if (snprintf(path, sizeof(path), "%s/%s", tv_vector_dir(), name) >= (int)sizeof(path)) {
        return NULL;
    }
    return test_read_file_terminated(path, len);
}

int tv_load_index(tv_index_entry_t *out, int cap)
{
    uint32_t len;
    uint8_t *text = tv_read_vector("index.txt", &len);
    if (text == NULL) {
        return -1;
    }
    text[len] = 0;
    int count = 0;
    char *line = (char *)text;
    while (line != NULL && *line != '\0') {
        char *end = strchr(line, '\n');
        if (end != NULL) {
            *end = '\0';
        }
        if (line[0] != '#' && line[0] != '\0') {
            if (count >= cap) {
                count = -1;
                break;
            }
            tv_index_entry_t *e = &out[count];
            if (sscanf(line, "%95s %d %15s", e->file, &e->code, e->layer) != 3) {
                count = -1;
                break;
            }
            count++;
        }
        line = end != NULL ? end + 1 : NULL;
    }
    free(text);
    return count;
}

int tv_load_trusted_key(tfa_trusted_key_t *key)
{
    uint32_t len;
    uint8_t *pub = tv_read_vector("key_trusted.pub", &len);
    if (pub == NULL) {
        return -1;
    }
    pub[len] = 0;
    int bad = test_unhex_exact((char *)pub, key->public_key, 32);
    free(pub);
    if (bad != 0) {
        return -1;
    }
    uint8_t digest[32];
    tfa_sha256(key->public_key, 32, digest);
    memcpy(key->key_id, digest, 8);
    return 0;
}

/* device.txt: "name value" lines. */
static int prv_device_value(const char *text, const char *name, uint32_t *value)
{
    size_t n = strlen(name);
    for (const char *p = text; p != NULL && *p != '\0'; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, name, n) == 0 && p[n] == ' ') {
            *value = (uint32_t)strtoul(p + n + 1, NULL, 0);
            return 0;
        }
    }
    return -1;
}

int tv_device_init(tv_device_t *d, uint32_t sector_size)
{
    memset(d, 0, sizeof(*d));
    uint32_t len;
    uint8_t *text = tv_read_vector("device.txt", &len);
    if (text == NULL) {
        fprintf(stderr, "cannot read %s/device.txt\n", tv_vector_dir());
        return -1;
    }
    text[len] = 0;
    uint32_t hw = 0, rv = 0, ram = 0, slot = 0, sector = 0;
    int bad = prv_device_value((char *)text, "hardware_class", &hw) | prv_device_value((char *)text, "runtime_version", &rv) |
              prv_device_value((char *)text, "ram_budget", &ram) | prv_device_value((char *)text, "slot_size", &slot) |
              prv_device_value((char *)text, "sector_size", &sector) |
              prv_device_value((char *)text, "security_floor", &d->expect_floor) |
              prv_device_value((char *)text, "active_sequence", &d->expect_active_sequence);
    free(text);
    if (bad != 0 || tv_load_trusted_key(&d->key) != 0) {
        fprintf(stderr, "bad device.txt or key_trusted.pub in %s\n", tv_vector_dir());
        return -1;
    }
    d->sector_size = sector_size != 0u ? sector_size : sector;
    d->cfg.hardware_class = hw;
    d->cfg.runtime_version = rv;
    d->cfg.ram_budget = ram;
    d->cfg.slot_size = slot;
    d->cfg.keys = &d->key;
    d->cfg.key_count = 1;
    d->cfg.max_trial_boots = 1;
    if (tfa_flash_host_init(&d->fh, NULL, TFA_FLASH_SIZE_FOR(d->sector_size, slot), d->sector_size) != 0) {
        return -1;
    }
    d->model_ram.size = slot > TFA_SLOT_MODEL_OFFSET ? slot - TFA_SLOT_MODEL_OFFSET : 0u;
    d->model_ram.buf = malloc(d->model_ram.size + 1u);
    d->cfg.model_ram = &d->model_ram;
    return d->model_ram.buf != NULL ? 0 : -1;
}

void tv_device_free(tv_device_t *d)
{
    tfa_flash_host_free(&d->fh);
    free(d->model_ram.buf);
    d->model_ram.buf = NULL;
}

static const uint8_t *g_windows_base;

static int prv_window_cmp(const void *a, const void *b)
{
    return memcmp(g_windows_base + *(const uint32_t *)a, g_windows_base + *(const uint32_t *)b, 32);
}

int tv_flash_shows(const tv_device_t *d, const uint8_t *clear, uint32_t len)
{
    if (len < 32u) {
        return 0;
    }
    /* Sorted offsets of the model's windows, then a binary search per flash position. */
    uint32_t *at = malloc((len - 31u) * sizeof(*at));
    if (at == NULL) {
        return 1;
    }
    uint32_t n = 0;
    for (uint32_t i = 0; i + 32u <= len; i++) {
        uint8_t seen[256] = {0};
        uint32_t distinct = 0;
        for (uint32_t j = 0; j < 32u; j++) {
            distinct += seen[clear[i + j]] == 0u;
            seen[clear[i + j]] = 1;
        }
        if (distinct >= 8u) {
            at[n++] = i;
        }
    }
    g_windows_base = clear;
    qsort(at, n, sizeof(*at), prv_window_cmp);
    const uint8_t *flash = d->fh.flash.mapped;
    int found = 0;
    for (uint32_t p = 0; p + 32u <= d->fh.flash.size && !found; p++) {
        uint32_t lo = 0, hi = n;
        while (lo < hi && !found) {
            uint32_t mid = lo + (hi - lo) / 2u;
            int c = memcmp(flash + p, clear + at[mid], 32);
            found = c == 0;
            if (c < 0) {
                hi = mid;
            } else {
                lo = mid + 1u;
            }
        }
    }
    free(at);
    return found;
}

int tv_device_boot(tv_device_t *d)
{
    return tfa_runtime_boot(&d->rt, &d->fh.flash, &d->cfg);
}

int tv_download(tfa_runtime_t *rt, const uint8_t *pkg, uint32_t len, uint32_t chunk)
{
    int err = tfa_install_begin(rt, pkg, len);
    if (err != 0) {
        return err;
    }
    uint32_t payload = len > TFA_MANIFEST_SIZE ? len - TFA_MANIFEST_SIZE : 0u;
    for (uint32_t off = 0; off < payload; off += chunk) {
        uint32_t n = payload - off < chunk ? payload - off : chunk;
        err = tfa_install_chunk(rt, off, pkg + TFA_MANIFEST_SIZE + off, n);
        if (err != 0) {
            return err;
        }
    }
    return tfa_install_end(rt);
}

int tv_install_confirm(tfa_runtime_t *rt, const uint8_t *pkg, uint32_t len, uint32_t chunk)
{
    int err = tv_download(rt, pkg, len, chunk);
    if (err == 0) {
        err = tfa_activate(rt);
    }
    if (err == 0) {
        err = tfa_selftest(rt);
    }
    if (err == 0) {
        err = tfa_confirm(rt);
    }
    return err;
}

int tv_install_vector(tfa_runtime_t *rt, const char *name, uint32_t chunk)
{
    uint32_t len;
    uint8_t *pkg = tv_read_vector(name, &len);
    if (pkg == NULL) {
        fprintf(stderr, "cannot read vector %s\n", name);
        return -TFA_ERR_TRUNCATED;
    }
    int err = tv_install_confirm(rt, pkg, len, chunk);
    free(pkg);
    return err;
}

int tv_check_active_model(const tv_device_t *d, uint32_t *sequence)
{
    const tfa_manifest_t *active = tfa_active_manifest(&d->rt);
    if (active == NULL) {
        return -TFA_ERR_NO_PREVIOUS;
    }
    uint8_t slot = d->rt.state.active_slot;
    const uint8_t *base = d->fh.flash.mapped + tfa_slot_address(&d->rt, slot);
    tfa_manifest_t m;
    int err = tfa_manifest_parse(base, TFA_MANIFEST_SIZE, &d->key, 1, &m);
    if (err != 0) {
        return err;
    }
    if (memcmp(&m, active, sizeof(m)) != 0) {
        return -TFA_ERR_DIGEST_MISMATCH;
    }
    uint32_t len = 0;
    const uint8_t *model = tfa_active_model(&d->rt, &len);
    /* In place, or (encrypted at rest, PROTOCOL 6.6) decrypted into the device's model RAM. */
    const uint8_t *where = (m.flags & TFA_MANIFEST_FLAG_ENCRYPTED) != 0u ? d->model_ram.buf : base + TFA_SLOT_MODEL_OFFSET;
    if (model != where || len != m.model_size) {
        return -TFA_ERR_SIZE_MISMATCH;
    }
    uint8_t digest[32];
    tfa_sha256(model, len, digest);
    if (memcmp(digest, m.model_sha256, 32) != 0) {
        return -TFA_ERR_DIGEST_MISMATCH;
    }
    *sequence = m.sequence;
    return 0;
}
