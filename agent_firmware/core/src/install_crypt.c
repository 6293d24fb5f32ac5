/* Key stream and ciphertext digest of an encrypted download (contract in tfa/install_crypt.h). */
#include "tfa/install_crypt.h"

#ifndef TFA_NO_ENCRYPTION

#include <string.h>

#include "tfa/errors.h"
#include "tfa/kdf.h"

void tfa_crypt_forget(tfa_install_crypt_t *c)
{
    if (c->keyed) {
        tfa_chacha20_wipe(&c->cipher);
    }
    c->keyed = 0;
    c->hashing = 0;
    c->hashed = 0;
}

int tfa_crypt_open(tfa_install_crypt_t *c, const uint8_t wrap[TFA_KEY_WRAP_SIZE], const uint8_t device_private[32],
                   const uint8_t device_public[32], const uint8_t manifest[TFA_MANIFEST_SIZE], uint32_t resume)
{
    tfa_crypt_forget(c);
    uint8_t key[TFA_CONTENT_KEY_SIZE];
    if (tfa_key_unwrap(key, wrap, device_private, device_public, manifest) != 0) {
        return -TFA_ERR_KEY_UNWRAP;
    }
    static const uint8_t nonce[12]; /* one content key per package: the fixed nonce never repeats */
    tfa_chacha20_init(&c->cipher, key, nonce, 0);
    volatile uint8_t *wipe = key;
    for (uint32_t i = 0; i < sizeof(key); i++) {
        wipe[i] = 0;
    }
    c->keyed = 1;
    /* The ciphertext digest can be checked only over a payload that arrives in full from here on. */
    c->hashing = resume == 0u;
    c->hashed = 0;
    tfa_sha256_init(&c->payload_hash);
    return 0;
}

int tfa_crypt_at(tfa_install_crypt_t *c, uint32_t offset, const uint8_t *data, uint32_t len)
{
    if (!c->keyed) {
        return -TFA_ERR_BAD_STATE;
    }
    if (c->hashing && offset == c->hashed) {
        tfa_sha256_update(&c->payload_hash, data, len);
        c->hashed += len;
    } else {
        c->hashing = 0; /* a resent range: the model digest alone decides */
    }
    if (c->cipher.offset != offset && tfa_chacha20_seek(&c->cipher, offset) != 0) {
        return -TFA_ERR_FIELD_RANGE;
    }
    return 0;
}

const uint8_t *tfa_crypt_piece(tfa_install_crypt_t *c, const uint8_t *data, uint32_t n, uint8_t *buf)
{
    (void)tfa_chacha20_xor(&c->cipher, buf, data, n); /* range checked by tfa_crypt_at */
    return buf;
}

int tfa_crypt_check(tfa_install_crypt_t *c, uint32_t payload_size, const uint8_t payload_sha256[32])
{
    if (!c->hashing || c->hashed != payload_size) {
        return 0;
    }
    uint8_t digest[32];
    tfa_sha256_final(&c->payload_hash, digest);
    c->hashing = 0;
    return memcmp(digest, payload_sha256, 32) != 0 ? -TFA_ERR_DIGEST_MISMATCH : 0;
}

/* ---- at rest ---- */

static const uint8_t prv_storage_info[] = "tinyfleet storage key v1";

static int prv_rest_read(void *ctx, uint32_t addr, uint8_t *dst, uint32_t len);
static int prv_rest_program(void *ctx, uint32_t addr, const uint8_t *src, uint32_t len);
static int prv_rest_erase(void *ctx, uint32_t addr);

void tfa_rest_init(tfa_rest_view_t *v, const tfa_flash_t *raw, const tfa_manifest_t slots[2],
                   uint32_t model_addr0, uint32_t model_addr1, const uint8_t *device_private,
                   const uint8_t *device_public)
{
    memset(v, 0, sizeof(*v));
    v->raw = raw;
    v->model_addr[0] = model_addr0;
    v->model_addr[1] = model_addr1;
    if (device_private != NULL && device_public != NULL &&
        tfa_hkdf_sha256(v->key, sizeof(v->key), device_public, 32, device_private, 32, prv_storage_info,
                        sizeof(prv_storage_info) - 1u) == 0) {
        v->slots = slots;
    }
    v->flash = *raw;
    v->flash.ctx = v;
    v->flash.mapped = NULL; /* ciphertext in place is of no use to the engine */
    v->flash.read = prv_rest_read;
    v->flash.program = prv_rest_program;
    v->flash.erase = prv_rest_erase;
}

int tfa_rest_encrypted(const tfa_rest_view_t *v, uint8_t slot)
{
    return v->slots != NULL && slot < 2u && (v->slots[slot].flags & TFA_MANIFEST_FLAG_ENCRYPTED) != 0u;
}

/* XOR the storage key stream over buf, which holds flash [addr, addr + len), where it meets an encrypted
 * model range. A key stream context on the stack per call: the view stays stateless (reads of a const
 * runtime go through it) at the cost of one block computed at each unaligned start. */
static void prv_rest_xor(const tfa_rest_view_t *v, uint32_t addr, uint8_t *buf, uint32_t len)
{
    for (uint8_t s = 0; s < 2u; s++) {
        if (!tfa_rest_encrypted(v, s)) {
            continue;
        }
        uint64_t lo = v->model_addr[s];
        uint64_t hi = lo + v->slots[s].model_size;
        uint64_t a = addr > lo ? addr : lo;
        uint64_t b = (uint64_t)addr + len < hi ? (uint64_t)addr + len : hi;
        if (a >= b) {
            continue;
        }
        tfa_chacha20_ctx c;
        tfa_chacha20_init(&c, v->key, v->slots[s].model_sha256, 0);
        if (tfa_chacha20_seek(&c, a - lo) == 0) {
            (void)tfa_chacha20_xor(&c, buf + (a - addr), buf + (a - addr), (size_t)(b - a));
        }
        tfa_chacha20_wipe(&c);
    }
}

static int prv_rest_read(void *ctx, uint32_t addr, uint8_t *dst, uint32_t len)
{
    const tfa_rest_view_t *v = ctx;
    int err = v->raw->read(v->raw->ctx, addr, dst, len);
    if (err == 0) {
        prv_rest_xor(v, addr, dst, len);
    }
    return err;
}

static int prv_rest_program(void *ctx, uint32_t addr, const uint8_t *src, uint32_t len)
{
    const tfa_rest_view_t *v = ctx;
    uint8_t piece[TFA_CRYPT_PIECE];
    int err = 0;
    for (uint32_t done = 0; done < len && err == 0;) {
        uint32_t n = len - done < TFA_CRYPT_PIECE ? len - done : TFA_CRYPT_PIECE;
        memcpy(piece, src + done, n);
        prv_rest_xor(v, addr + done, piece, n);
        err = v->raw->program(v->raw->ctx, addr + done, piece, n);
        done += n;
    }
    tfa_wipe(piece, sizeof(piece));
    return err;
}

static int prv_rest_erase(void *ctx, uint32_t addr)
{
    const tfa_rest_view_t *v = ctx;
    return v->raw->erase(v->raw->ctx, addr);
}

const uint8_t *tfa_rest_load(const tfa_rest_view_t *v, uint8_t slot, tfa_model_ram_t *ram)
{
    if (!tfa_rest_encrypted(v, slot) || ram == NULL) {
        return NULL;
    }
    const tfa_manifest_t *m = &v->slots[slot];
    if (ram->buf == NULL && ram->acquire != NULL) {
        ram->size = 0;
        ram->held = 0;
        ram->buf = ram->acquire(ram->acquire_ctx, m->model_size, &ram->size);
    }
    if (ram->buf == NULL || ram->size < m->model_size) {
        return NULL;
    }
    if (!ram->held || memcmp(ram->sha256, m->model_sha256, 32) != 0) {
        uint8_t digest[32];
        ram->held = 0;
        if (prv_rest_read(v->flash.ctx, v->model_addr[slot], ram->buf, m->model_size) != 0) {
            return NULL;
        }
        tfa_sha256(ram->buf, m->model_size, digest);
        if (memcmp(digest, m->model_sha256, 32) != 0) {
            return NULL;
        }
        memcpy(ram->sha256, m->model_sha256, 32);
        ram->held = 1;
    }
    return ram->buf;
}

#else
typedef int tfa_install_crypt_empty_unit; /* ISO C: a translation unit is not empty */
#endif
