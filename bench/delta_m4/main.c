/* Delta decoder instruction counts on the Cortex-M4 (QEMU mps2-an386, `-icount shift=0`), built by
 * bench/delta_m4.py with the port's startup and board files. For each stream in streams.h (generated):
 * decode it from a RAM "flash" holding the base (read through the flash contract like on a device) into
 * PSRAM in 256-byte chunks, then print
 *   BENCH <name> <output bytes> ticks=<SysTick ticks> ok=<1 if the output's checksum matches>
 * A calibration loop of known length gives instructions per tick. */
#include <stdint.h>
#include <string.h>

#include "board.h"
#include "uart_print.h"
#include "streams.h"
#include "tfa/delta.h"

#define OUT_BASE ((uint8_t *)0x21000000u) /* PSRAM: never touched by startup */
#define CALIB_LOOPS 1000000u
#define CHUNK 256u

static tfa_delta_t g_delta;
static const uint8_t *g_base;


static void prv_calib_loop(uint32_t n)
{
    __asm__ volatile("1: subs %0, %0, #1\n\tbne 1b" : "+r"(n) : : "cc");
}

/* Addresses below 0x01000000 are the base, the rest the output region. */
static int prv_read(void *ctx, uint32_t addr, uint8_t *dst, uint32_t len)
{
    (void)ctx;
    memcpy(dst, addr < 0x01000000u ? &g_base[addr] : &OUT_BASE[addr - 0x01000000u], len);
    return 0;
}

static int prv_program(void *ctx, uint32_t addr, const uint8_t *src, uint32_t len)
{
    (void)ctx;
    memcpy(&OUT_BASE[addr - 0x01000000u], src, len);
    return 0;
}

static int prv_erase(void *ctx, uint32_t addr)
{
    (void)ctx;
    (void)addr;
    return 0;
}

static const tfa_flash_t g_flash = {NULL, 0x02000000u, 4096u, NULL, prv_read, prv_program, prv_erase};

static void prv_bench(const bench_stream_t *s)
{
    g_base = s->base;
    uint32_t t0 = board_ticks();
    int rc = tfa_delta_begin(&g_delta, &g_flash, 0, s->base_len, 0x01000000u, s->out_len);
    for (uint32_t off = 0; rc == 0 && off < s->stream_len; off += CHUNK) {
        uint32_t n = s->stream_len - off < CHUNK ? s->stream_len - off : CHUNK;
        rc = tfa_delta_feed(&g_delta, &s->stream[off], n);
    }
    if (rc == 0) {
        rc = tfa_delta_finish(&g_delta);
    }
    uint32_t t1 = board_ticks();
    uint32_t sum = 0;
    for (uint32_t i = 0; i < s->out_len; i++) {
        sum = sum * 31u + OUT_BASE[i];
    }
    uart_puts("BENCH ");
    uart_puts(s->name);
    uart_puts(" ");
    uart_putu(s->out_len);
    uart_puts(" ticks=");
    uart_putu(t1 - t0);
    uart_puts(rc == 0 && sum == s->out_sum ? " ok=1\n" : " ok=0\n");
}

int main(void)
{
    board_init();
    uart_puts("BENCH START\n");
    uint32_t t0 = board_ticks();
    prv_calib_loop(CALIB_LOOPS);
    uint32_t t1 = board_ticks();
    uart_puts("BENCH calib ");
    uart_putu(2u * CALIB_LOOPS);
    uart_puts(" ticks=");
    uart_putu(t1 - t0);
    uart_puts("\n");
    for (uint32_t i = 0; i < BENCH_STREAMS; i++) {
        prv_bench(&bench_streams[i]);
    }
    uart_puts("BENCH END\n");
    for (;;) {
    }
}
