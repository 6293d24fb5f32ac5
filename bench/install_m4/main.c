/* A whole install through the runtime on the Cortex-M4 (QEMU mps2-an386, `-icount shift=0`), built by
 * bench/install_m4.py with every core source and the port's startup and board files, the packages in
 * packages.h (generated). For each package, on a fresh RAM flash in PSRAM:
 *   begin (manifest authenticated), the key wrap for an encrypted one (X25519 + HKDF + HMAC), the payload
 *   in 256-byte chunks (decrypted, re-encrypted at rest), end (model re-hashed from flash), activate and
 *   the trial self-test (integrity re-check; for a model encrypted at rest also its copy into RAM)
 * and print one line per phase:
 *   BENCH <package> <phase> <model bytes> ticks=<SysTick ticks> rc=<return code>
 * A calibration loop of known length gives instructions per tick. */
#include <stdint.h>
#include <string.h>

#include "board.h"
#include "packages.h"
#include "tfa/runtime.h"
#include "tfa/x25519.h"
#include "uart_print.h"

#define FLASH_MEM ((uint8_t *)0x21000000u) /* PSRAM: never touched by startup */
#define SECTOR 4096u
#define CALIB_LOOPS 1000000u
#define CHUNK 256u

static tfa_runtime_t g_rt;
static tfa_delta_t g_delta;
static tfa_device_config_t g_cfg;
static tfa_trusted_key_t g_key;
static uint8_t g_device_public[32];
static uint8_t g_model_ram_buf[BENCH_MODEL_RAM] __attribute__((aligned(16)));
static tfa_model_ram_t g_model_ram = {.buf = g_model_ram_buf, .size = BENCH_MODEL_RAM};

static void prv_calib_loop(uint32_t n)
{
    __asm__ volatile("1: subs %0, %0, #1\n\tbne 1b" : "+r"(n) : : "cc");
}

static int prv_read(void *ctx, uint32_t addr, uint8_t *dst, uint32_t len)
{
    (void)ctx;
    memcpy(dst, &FLASH_MEM[addr], len);
    return 0;
}

static int prv_program(void *ctx, uint32_t addr, const uint8_t *src, uint32_t len)
{
    (void)ctx;
    for (uint32_t i = 0; i < len; i++) {
        FLASH_MEM[addr + i] &= src[i]; /* NOR: programming clears bits only */
    }
    return 0;
}

static int prv_erase(void *ctx, uint32_t addr)
{
    (void)ctx;
    memset(&FLASH_MEM[addr], 0xFF, SECTOR);
    return 0;
}

static tfa_flash_t g_flash = {NULL, 0, SECTOR, FLASH_MEM, prv_read, prv_program, prv_erase};

static void prv_report(const char *pkg, const char *phase, uint32_t size, uint32_t ticks, int rc)
{
    uart_puts("BENCH ");
    uart_puts(pkg);
    uart_puts(" ");
    uart_puts(phase);
    uart_puts(" ");
    uart_putu(size);
    uart_puts(" ticks=");
    uart_putu(ticks);
    uart_puts(rc == 0 ? " rc=0\n" : " rc=1\n");
}

static void prv_bench(const bench_package_t *p)
{
    g_flash.size = TFA_FLASH_SIZE_FOR(SECTOR, BENCH_SLOT_SIZE);
    memset(FLASH_MEM, 0xFF, g_flash.size);
    g_model_ram.held = 0; /* each package decrypts its model into RAM afresh */
    int rc = tfa_runtime_boot(&g_rt, &g_flash, &g_cfg);
    uint32_t t0 = board_ticks();
    rc = rc != 0 ? rc : tfa_install_begin(&g_rt, p->pkg, TFA_MANIFEST_SIZE);
    uint32_t t1 = board_ticks();
    if (p->wrap != NULL) {
        rc = rc != 0 ? rc : tfa_install_key(&g_rt, p->wrap);
    }
    uint32_t t2 = board_ticks();
    uint32_t payload = p->len - TFA_MANIFEST_SIZE;
    for (uint32_t off = 0; rc == 0 && off < payload; off += CHUNK) {
        uint32_t n = payload - off < CHUNK ? payload - off : CHUNK;
        rc = tfa_install_chunk(&g_rt, off, p->pkg + TFA_MANIFEST_SIZE + off, n);
    }
    uint32_t t3 = board_ticks();
    rc = rc != 0 ? rc : tfa_install_end(&g_rt);
    uint32_t t4 = board_ticks();
    rc = rc != 0 ? rc : tfa_activate(&g_rt);
    rc = rc != 0 ? rc : tfa_selftest(&g_rt);
    uint32_t t5 = board_ticks();
    uint32_t len = 0;
    const uint8_t *model = tfa_active_model(&g_rt, &len);
    uint32_t t6 = board_ticks();
    rc = rc != 0 ? rc : (model != NULL && len == p->model_size ? 0 : 1);
    prv_report(p->name, "begin", p->model_size, t1 - t0, rc);
    prv_report(p->name, "key", p->model_size, t2 - t1, rc);
    prv_report(p->name, "chunks", p->model_size, t3 - t2, rc);
    prv_report(p->name, "end", p->model_size, t4 - t3, rc);
    prv_report(p->name, "activate+selftest", p->model_size, t5 - t4, rc);
    prv_report(p->name, "model", p->model_size, t6 - t5, rc);
}

int main(void)
{
    board_init();
    uart_puts("BENCH START\n");
    memcpy(g_key.key_id, bench_key_id, 8);
    memcpy(g_key.public_key, bench_public_key, 32);
    tfa_x25519_base(g_device_public, bench_device_private);
    g_cfg.hardware_class = BENCH_HARDWARE_CLASS;
    g_cfg.runtime_version = TFA_RUNTIME_VERSION;
    g_cfg.ram_budget = 1u << 20;
    g_cfg.slot_size = BENCH_SLOT_SIZE;
    g_cfg.keys = &g_key;
    g_cfg.key_count = 1;
    g_cfg.max_trial_boots = 1;
    g_cfg.delta_workspace = &g_delta;
    g_cfg.encryption_private = bench_device_private;
    g_cfg.encryption_public = g_device_public;
    g_cfg.model_ram = &g_model_ram;
    uint32_t t0 = board_ticks();
    prv_calib_loop(CALIB_LOOPS);
    uint32_t t1 = board_ticks();
    uart_puts("BENCH calib x ");
    uart_putu(2u * CALIB_LOOPS);
    uart_puts(" ticks=");
    uart_putu(t1 - t0);
    uart_puts(" rc=0\n");
    for (uint32_t i = 0; i < BENCH_PACKAGES; i++) {
        prv_bench(&bench_packages[i]);
    }
    uart_puts("BENCH END\n");
    for (;;) {
    }
}
