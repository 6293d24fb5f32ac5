/* Bounds-checked reader for the FlatBuffers binary format (the container of .tflite files).
 * Every offset that comes from the buffer is checked against its length before it is followed, so a
 * malformed or hostile model yields -TFA_ERR_MODEL_INVALID, never an out-of-bounds read. Values are
 * read byte by byte (little-endian), so unaligned flash reads are fine. Tables are named by their
 * absolute byte offset in the buffer; 0 means "absent". */
#ifndef TFA_ENGINE_FB_H
#define TFA_ENGINE_FB_H

#include <stdint.h>

typedef struct tfa_fb {
    const uint8_t *buf;
    uint32_t len;
} tfa_fb_t;

/* A vector: absolute offset of its first element and its element count (count 0: absent or empty). */
typedef struct tfa_fb_vec {
    uint32_t start;
    uint32_t count;
} tfa_fb_vec_t;

static inline uint32_t tfa_fb_rd_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static inline int32_t tfa_fb_rd_i32(const uint8_t *p)
{
    return (int32_t)tfa_fb_rd_u32(p);
}

static inline uint16_t tfa_fb_rd_u16(const uint8_t *p)
{
    return (uint16_t)((uint32_t)p[0] | ((uint32_t)p[1] << 8));
}

/* Root table of the buffer. */
int tfa_fb_root(const tfa_fb_t *fb, uint32_t *table);

/* Scalars of a table field; the default is returned when the field is absent. */
int tfa_fb_u8(const tfa_fb_t *fb, uint32_t table, uint32_t field_id, uint8_t dflt, uint8_t *out);
int tfa_fb_i32(const tfa_fb_t *fb, uint32_t table, uint32_t field_id, int32_t dflt, int32_t *out);
int tfa_fb_u64(const tfa_fb_t *fb, uint32_t table, uint32_t field_id, uint64_t *out);
int tfa_fb_f32(const tfa_fb_t *fb, uint32_t table, uint32_t field_id, float dflt, float *out);

/* Sub-table field (0 when absent). */
int tfa_fb_table(const tfa_fb_t *fb, uint32_t table, uint32_t field_id, uint32_t *out);

/* Vector field whose elements are elem_size bytes each (scalars, or 4-byte offsets for tables and
 * strings); the whole vector is checked to lie inside the buffer. */
int tfa_fb_vector(const tfa_fb_t *fb, uint32_t table, uint32_t field_id, uint32_t elem_size,
                  tfa_fb_vec_t *out);

/* Table element i of a vector of tables. */
int tfa_fb_vec_table(const tfa_fb_t *fb, const tfa_fb_vec_t *vec, uint32_t i, uint32_t *out);

/* int32 element i of a vector of int32 (caller checks i < count). */
static inline int32_t tfa_fb_vec_i32(const tfa_fb_t *fb, const tfa_fb_vec_t *vec, uint32_t i)
{
    return tfa_fb_rd_i32(fb->buf + vec->start + 4u * i);
}

#endif
