/* Small helpers shared by the C test programs: reading a whole file and decoding hex. */
#ifndef TEST_UTIL_H
#define TEST_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* The whole file at path (malloc'ed, free() it), or NULL. The buffer is exactly the file's size, so that
 * ASan flags a read one byte past the end; an empty file gives *len = 0 and a 1-byte allocation. */
uint8_t *test_read_file(const char *path, uint32_t *len);

/* The same with one more byte, 0, after the contents: a text file is a C string. */
uint8_t *test_read_file_terminated(const char *path, uint32_t *len);

/* The first 2 * n characters of hex into n bytes; characters after them are ignored. Returns 0, or -1
 * if the string is shorter or holds a non-hex digit there. */
int test_unhex_exact(const char *hex, uint8_t *out, size_t n);

/* The whole string hex ("-" means empty) into out (cap bytes). Returns the byte count, or -1 if the
 * length is odd, too long or a character is not a hex digit. */
int test_unhex(const char *hex, uint8_t *out, size_t cap);

/* One step of xorshift32 (Marsaglia): a reproducible sequence from a non-zero seed. Returns the new state. */
uint32_t test_xorshift32(uint32_t *state);

#endif
