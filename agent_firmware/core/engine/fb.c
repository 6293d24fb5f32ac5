/* FlatBuffers reader: see fb.h. Layout reminder: a table starts with an int32 offset back to its
 * vtable (vtable = table - soffset); the vtable is uint16 [vtable bytes, table bytes, field offsets..];
 * a field offset of 0 means the field is absent. References (tables, vectors, strings) are uint32
 * offsets relative to where they are stored. */
#include "fb.h"

#include <stddef.h>

#include "tfa/errors.h"

static int prv_span_ok(const tfa_fb_t *fb, uint64_t off, uint64_t size)
{
    return off <= fb->len && size <= (uint64_t)fb->len - off;
}

/* Absolute offset of a field's storage, 0 when the field is absent; checks size bytes fit. */
static int prv_field(const tfa_fb_t *fb, uint32_t table, uint32_t field_id, uint32_t size,
                     uint32_t *out)
{
    *out = 0;
    if (table == 0 || !prv_span_ok(fb, table, 4)) {
        return -TFA_ERR_MODEL_INVALID;
    }
    int64_t vtable = (int64_t)table - (int64_t)tfa_fb_rd_i32(fb->buf + table);
    if (vtable < 0 || !prv_span_ok(fb, (uint64_t)vtable, 4)) {
        return -TFA_ERR_MODEL_INVALID;
    }
    const uint8_t *vt = fb->buf + vtable;
    uint32_t vt_size = tfa_fb_rd_u16(vt);
    uint32_t tbl_size = tfa_fb_rd_u16(vt + 2);
    if (vt_size < 4 || (vt_size & 1u) || !prv_span_ok(fb, (uint64_t)vtable, vt_size) ||
        !prv_span_ok(fb, table, tbl_size)) {
        return -TFA_ERR_MODEL_INVALID;
    }
    uint32_t slot = 4u + 2u * field_id;
    if (slot + 2u > vt_size) {
        return 0; /* field newer than the writer: absent */
    }
    uint32_t foff = tfa_fb_rd_u16(vt + slot);
    if (foff == 0) {
        return 0;
    }
    if ((uint64_t)foff + size > tbl_size) {
        return -TFA_ERR_MODEL_INVALID;
    }
    *out = table + foff;
    return 0;
}

/* Follow the uint32 reference stored at abs offset at. */
static int prv_deref(const tfa_fb_t *fb, uint32_t at, uint32_t *out)
{
    uint64_t target = (uint64_t)at + tfa_fb_rd_u32(fb->buf + at);
    if (!prv_span_ok(fb, target, 4) || target == 0) {
        return -TFA_ERR_MODEL_INVALID;
    }
    *out = (uint32_t)target;
    return 0;
}

int tfa_fb_root(const tfa_fb_t *fb, uint32_t *table)
{
    if (fb->buf == NULL || fb->len < 8) {
        return -TFA_ERR_MODEL_INVALID;
    }
    return prv_deref(fb, 0, table);
}

int tfa_fb_u8(const tfa_fb_t *fb, uint32_t table, uint32_t field_id, uint8_t dflt, uint8_t *out)
{
    uint32_t at;
    int rc = prv_field(fb, table, field_id, 1, &at);
    if (rc != 0) {
        return rc;
    }
    *out = at ? fb->buf[at] : dflt;
    return 0;
}

int tfa_fb_i32(const tfa_fb_t *fb, uint32_t table, uint32_t field_id, int32_t dflt, int32_t *out)
{
    uint32_t at;
    int rc = prv_field(fb, table, field_id, 4, &at);
    if (rc != 0) {
        return rc;
    }
    *out = at ? tfa_fb_rd_i32(fb->buf + at) : dflt;
    return 0;
}

int tfa_fb_u64(const tfa_fb_t *fb, uint32_t table, uint32_t field_id, uint64_t *out)
{
    uint32_t at;
    int rc = prv_field(fb, table, field_id, 8, &at);
    if (rc != 0) {
        return rc;
    }
    *out = at ? ((uint64_t)tfa_fb_rd_u32(fb->buf + at + 4) << 32) | tfa_fb_rd_u32(fb->buf + at) : 0;
    return 0;
}

int tfa_fb_f32(const tfa_fb_t *fb, uint32_t table, uint32_t field_id, float dflt, float *out)
{
    uint32_t at;
    int rc = prv_field(fb, table, field_id, 4, &at);
    if (rc != 0) {
        return rc;
    }
    if (at == 0) {
        *out = dflt;
        return 0;
    }
    union {
        uint32_t u;
        float f;
    } v = {.u = tfa_fb_rd_u32(fb->buf + at)};
    *out = v.f;
    return 0;
}

int tfa_fb_table(const tfa_fb_t *fb, uint32_t table, uint32_t field_id, uint32_t *out)
{
    uint32_t at;
    *out = 0;
    int rc = prv_field(fb, table, field_id, 4, &at);
    if (rc != 0 || at == 0) {
        return rc;
    }
    return prv_deref(fb, at, out);
}

int tfa_fb_vector(const tfa_fb_t *fb, uint32_t table, uint32_t field_id, uint32_t elem_size,
                  tfa_fb_vec_t *out)
{
    uint32_t at;
    uint32_t vec;
    out->start = 0;
    out->count = 0;
    int rc = prv_field(fb, table, field_id, 4, &at);
    if (rc != 0 || at == 0) {
        return rc;
    }
    rc = prv_deref(fb, at, &vec);
    if (rc != 0) {
        return rc;
    }
    uint32_t count = tfa_fb_rd_u32(fb->buf + vec);
    if (!prv_span_ok(fb, (uint64_t)vec + 4u, (uint64_t)count * elem_size)) {
        return -TFA_ERR_MODEL_INVALID;
    }
    out->start = vec + 4u;
    out->count = count;
    return 0;
}

int tfa_fb_vec_table(const tfa_fb_t *fb, const tfa_fb_vec_t *vec, uint32_t i, uint32_t *out)
{
    if (i >= vec->count) {
        return -TFA_ERR_MODEL_INVALID;
    }
    return prv_deref(fb, vec->start + 4u * i, out);
}
