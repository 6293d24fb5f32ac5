/* Bench firmware: measures the core's crypto at boot and prints one line per figure on UART0, e.g.
 *   BENCH sha256 1024 ticks=<n> digest=<first 8 bytes hex>
 * then "BENCH END". Run under `qemu-system-arm -icount shift=0`, where every guest instruction takes
 * 1 ns of virtual time, so SysTick ticks (25 MHz) count instructions in units of 40; the "calib" line
 * measures that ratio with a loop of known length. bench/crypto_m4.py runs it and makes the table. */
#include <stdint.h>
#include <string.h>

#include "bench_vector.h"
#include "board.h"
#include "uart_print.h"
#include "tfa/chacha20.h"
#include "tfa/ed25519.h"
#include "tfa/kdf.h"
#include "tfa/key_wrap.h"
#include "tfa/sha256.h"
#include "tfa/sha512.h"
#include "tfa/x25519.h"

extern uint32_t __stack_bottom[];

#define STACK_PAINT 0xA5A5A5A5u
#define CALIB_LOOPS 1000000u

static uint8_t prv_data[16384];


static void prv_puthex(const uint8_t *p, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        board_uart_putc((uint8_t)"0123456789abcdef"[p[i] >> 4]);
        board_uart_putc((uint8_t)"0123456789abcdef"[p[i] & 0xFu]);
    }
}

/* Exactly 2 instructions per iteration (subs, bne). */
static void prv_calib_loop(uint32_t n)
{
    __asm__ volatile("1: subs %0, %0, #1\n\tbne 1b" : "+r"(n) : : "cc");
}

/* Fill the unused stack below the current frame so the deepest use can be found afterwards. */
static void prv_paint_stack(void)
{
    uint8_t here;
    uint32_t *p = __stack_bottom;
    while ((uintptr_t)(p + 64) < (uintptr_t)&here) {
        *p++ = STACK_PAINT;
    }
}

static uint32_t prv_stack_used(void)
{
    const uint32_t *p = __stack_bottom;
    extern uint32_t __stack_top[];
    while (p < __stack_top && *p == STACK_PAINT) {
        p++;
    }
    return (uint32_t)((uintptr_t)__stack_top - (uintptr_t)p);
}

static void prv_line(const char *name, uint32_t size, uint32_t ticks)
{
    uart_puts("BENCH ");
    uart_puts(name);
    uart_puts(" ");
    uart_putu(size);
    uart_puts(" ticks=");
    uart_putu(ticks);
}

static void prv_bench_sha256(uint32_t len)
{
    uint8_t digest[32];
    uint32_t t0 = board_ticks();
    tfa_sha256(prv_data, len, digest);
    uint32_t t1 = board_ticks();
    prv_line("sha256", len, t1 - t0);
    uart_puts(" digest=");
    prv_puthex(digest, 8);
    uart_puts("\n");
}

static void prv_bench_sha512(uint32_t len)
{
    uint8_t digest[64];
    uint32_t t0 = board_ticks();
    tfa_sha512(prv_data, len, digest);
    uint32_t t1 = board_ticks();
    prv_line("sha512", len, t1 - t0);
    uart_puts(" digest=");
    prv_puthex(digest, 8);
    uart_puts("\n");
}

static void prv_bench_ed25519(const char *name, const uint8_t signature[64])
{
    prv_paint_stack();
    uint32_t t0 = board_ticks();
    int result = tfa_ed25519_verify(signature, bench_public_key, prv_data, BENCH_MSG_LEN);
    uint32_t t1 = board_ticks();
    prv_line(name, BENCH_MSG_LEN, t1 - t0);
    uart_puts(result == 0 ? " result=valid" : " result=invalid");
    uart_puts(" stack=");
    uart_putu(prv_stack_used());
    uart_puts("\n");
}

/* X25519 of scalar = data[0..31] and u = data[32..63]; bench/crypto_m4.py recomputes the output. */
static void prv_bench_x25519(void)
{
    uint8_t out[32];
    prv_paint_stack();
    uint32_t t0 = board_ticks();
    int rc = tfa_x25519(out, prv_data, prv_data + 32);
    uint32_t t1 = board_ticks();
    prv_line("x25519", 32, t1 - t0);
    uart_puts(rc == 0 ? " out=" : " out=zero");
    prv_puthex(out, 8);
    uart_puts(" stack=");
    uart_putu(prv_stack_used());
    uart_puts("\n");
}

/* ChaCha20 with key data[0..31], nonce 0, counter 0 over data[0..len), streamed in 1 KiB chunks as an
 * install would; prints the last 8 ciphertext bytes. */
static void prv_bench_chacha20(uint32_t len)
{
    static uint8_t chunk[1024];
    tfa_chacha20_ctx ctx;
    static const uint8_t nonce[12] = {0};
    uint32_t t0 = board_ticks();
    tfa_chacha20_init(&ctx, prv_data, nonce, 0);
    for (uint32_t at = 0; at < len; at += sizeof(chunk)) {
        uint32_t n = len - at < sizeof(chunk) ? len - at : (uint32_t)sizeof(chunk);
        (void)tfa_chacha20_xor(&ctx, chunk, prv_data + at, n);
    }
    uint32_t t1 = board_ticks();
    prv_line("chacha20", len, t1 - t0);
    uart_puts(" tail=");
    uint32_t last = (len - 1u) % sizeof(chunk) + 1u;
    prv_puthex(chunk + last - 8u, 8);
    uart_puts("\n");
}

/* Wraps content key data[64..95] for device scalar data[96..127] with ephemeral scalar data[128..159]
 * and "manifest" data[0..291] (untimed, from the same primitives), then times the unwrap. The key printed
 * is checked by bench/crypto_m4.py against tinyfleet.signing.encryption's unwrap of the same wrap. */
static void prv_bench_unwrap(void)
{
    static const uint8_t info[] = "tinyfleet content key v1";
    const uint8_t *content = prv_data + 64, *device = prv_data + 96, *eph = prv_data + 128;
    uint8_t device_pub[32], wrap[TFA_KEY_WRAP_SIZE], shared[32], salt[64], okm[64], digest[32], mac[32];
    tfa_x25519_base(device_pub, device);
    tfa_x25519_base(wrap, eph);
    (void)tfa_x25519(shared, eph, device_pub);
    memcpy(salt, wrap, 32);
    memcpy(salt + 32, device_pub, 32);
    (void)tfa_hkdf_sha256(okm, 64, salt, 64, shared, 32, info, sizeof(info) - 1u);
    for (uint32_t i = 0; i < 32u; i++) {
        wrap[32u + i] = (uint8_t)(content[i] ^ okm[i]);
    }
    tfa_sha256(prv_data, TFA_MANIFEST_SIZE, digest);
    tfa_hmac_sha256_ctx h;
    tfa_hmac_sha256_init(&h, okm + 32, 32);
    tfa_hmac_sha256_update(&h, wrap + 32, 32);
    tfa_hmac_sha256_update(&h, digest, 32);
    tfa_hmac_sha256_final(&h, mac);
    memcpy(wrap + 64, mac, 16);

    uint8_t key[32];
    prv_paint_stack();
    uint32_t t0 = board_ticks();
    int rc = tfa_key_unwrap(key, wrap, device, device_pub, prv_data);
    uint32_t t1 = board_ticks();
    prv_line("key_unwrap", TFA_KEY_WRAP_SIZE, t1 - t0);
    uart_puts(rc == 0 ? " result=valid wrap=" : " result=invalid wrap=");
    prv_puthex(wrap, TFA_KEY_WRAP_SIZE);
    uart_puts(" key=");
    prv_puthex(key, 8);
    uart_puts(" stack=");
    uart_putu(prv_stack_used());
    uart_puts("\n");
}

int main(void)
{
    board_init();
    uart_puts("BENCH START\n");

    uint32_t t0 = board_ticks();
    prv_calib_loop(CALIB_LOOPS);
    uint32_t t1 = board_ticks();
    prv_line("calib", 2u * CALIB_LOOPS, t1 - t0);
    uart_puts("\n");

    for (uint32_t i = 0; i < sizeof(prv_data); i++) {
        prv_data[i] = (uint8_t)(i * 7u + 3u);
    }
    prv_bench_sha256(1024);
    prv_bench_sha256(sizeof(prv_data));
    prv_bench_sha512(1024);
    prv_bench_ed25519("ed25519_verify", bench_signature);
    uint8_t bad[64];
    memcpy(bad, bench_signature, sizeof(bad));
    bad[32] ^= 0x01u; /* lowest bit of S: still canonical, so the whole check runs and fails */
    prv_bench_ed25519("ed25519_verify_bad", bad);
    prv_bench_x25519();
    prv_bench_unwrap();
    prv_bench_chacha20(1024);
    prv_bench_chacha20(sizeof(prv_data));

    uart_puts("BENCH END\n");
    for (;;) {
    }
}
