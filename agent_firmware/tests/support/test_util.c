#include "test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* spare: zeroed bytes allocated after the contents. */
static uint8_t *prv_read_file(const char *path, uint32_t *len, size_t spare)
{
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }
    uint8_t *buf = NULL;
    long size = -1;
    if (fseek(f, 0, SEEK_END) == 0) {
        size = ftell(f);
    }
    /* 256 MiB keeps the length well inside uint32_t. */
    if (size >= 0 && size < 0x10000000L && fseek(f, 0, SEEK_SET) == 0) {
        size_t alloc = (size_t)size + spare;
        buf = calloc(alloc != 0u ? alloc : 1u, 1);
        if (buf != NULL && fread(buf, 1, (size_t)size, f) != (size_t)size) {
            free(buf);
            buf = NULL;
        }
    }
    fclose(f);
    if (buf != NULL) {
        *len = (uint32_t)size;
    }
    return buf;
}

uint8_t *test_read_file(const char *path, uint32_t *len)
{
    return prv_read_file(path, len, 0);
}

uint8_t *test_read_file_terminated(const char *path, uint32_t *len)
{
    return prv_read_file(path, len, 1);
}

static int prv_nibble(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

int test_unhex_exact(const char *hex, uint8_t *out, size_t n)
{
    if (strlen(hex) < 2u * n) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        int hi = prv_nibble(hex[2u * i]);
        int lo = prv_nibble(hex[2u * i + 1u]);
        if (hi < 0 || lo < 0) {
            return -1;
        }
        out[i] = (uint8_t)((hi << 4) | lo);
    }
    return 0;
}

int test_unhex(const char *hex, uint8_t *out, size_t cap)
{
    if (strcmp(hex, "-") == 0) {
        return 0;
    }
    size_t n = strlen(hex);
    if (n % 2u != 0 || n / 2u > cap || test_unhex_exact(hex, out, n / 2u) != 0) {
        return -1;
    }
    return (int)(n / 2u);
}

uint32_t test_xorshift32(uint32_t *state)
{
    uint32_t x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *state = x;
    return x;
}
