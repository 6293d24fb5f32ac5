/* libFuzzer harness: the streaming delta decoder. Input: u32 model size (low 15 bits used), u16 base
 * size (0: no base, a compressed full model; at most 8192), u8 chunk size selector, then the stream. The base is a fixed
 * pseudo-random 8 KiB model in the flash (the decoder does not judge its content; the runtime's digest
 * does). The stream is fed in chunks; every 3rd chunk the decoder is "rebooted" from its checkpoint. */
#include "fuzz_common.h"
#include "tfa/delta.h"
#include "tfa/errors.h"

enum { BASE_LEN = 8192, OUT_MAX = 32768, FLASH = BASE_LEN + OUT_MAX };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t storage[FLASH];
    static uint8_t base[BASE_LEN];
    static tfa_delta_t d;
    if (size < 7) {
        return 0;
    }
    if (base[0] == 0) {
        uint32_t x = 0x2545F491u;
        for (uint32_t i = 0; i < BASE_LEN; i++) {
            x ^= x << 13, x ^= x >> 17, x ^= x << 5;
            base[i] = (uint8_t)x;
        }
        base[0] = 1;
    }
    uint32_t out_len = fz_u32(data) & 0x7FFFu;
    uint32_t base_len = fz_u16(data + 4) % (BASE_LEN + 1u);
    uint32_t chunk = 1u + data[6] * 7u;
    const uint8_t *stream = data + 7;
    uint32_t len = (uint32_t)size - 7u;
    if (out_len == 0) {
        return 0;
    }
    tfa_flash_host_t fh;
    fz_flash(&fh, storage, FLASH, FZ_SECTOR);
    if (fh.flash.program(fh.flash.ctx, 0, base, BASE_LEN) != 0) {
        abort();
    }
    int rc = tfa_delta_begin(&d, &fh.flash, 0, base_len, BASE_LEN, out_len);
    uint32_t off = 0;
    uint32_t n_chunks = 0;
    uint32_t last_resume = UINT32_MAX;
    while (rc == 0 && off < len) {
        uint32_t n = len - off < chunk ? len - off : chunk;
        rc = tfa_delta_feed(&d, stream + off, n);
        off += n;
        if (rc == 0 && ++n_chunks % 3u == 0) {
            tfa_delta_checkpoint_t cp = *tfa_delta_checkpoint(&d);
            uint32_t at = cp.valid ? cp.in_offset : 0u;
            if (at != last_resume && at <= off) {
                last_resume = at;
                rc = cp.valid ? tfa_delta_resume(&d, &fh.flash, 0, base_len, BASE_LEN, out_len, &cp)
                              : tfa_delta_begin(&d, &fh.flash, 0, base_len, BASE_LEN, out_len);
                off = at;
            }
        }
    }
    if (rc == 0) {
        rc = tfa_delta_finish(&d);
    }
    if (rc != 0 && rc != -TFA_ERR_DELTA_CORRUPT) {
        abort(); /* the flash never fails here: only a corrupt stream may be refused */
    }
    return 0;
}
