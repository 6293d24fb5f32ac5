/* libFuzzer harness: the power-safe state log. The input is the raw content of the two state sectors
 * (small 256-byte sectors so that the fuzzer fills them); boot-time load must pick a record or report
 * corruption, and the log must then take saves (crossing into the other sector) and load them back. */
#include <stdio.h>

#include "fuzz_common.h"
#include "tfa/errors.h"
#include "tfa/state.h"

enum { SECTOR = 256, AREA = 2 * SECTOR };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t storage[AREA];
    tfa_flash_host_t fh;
    fz_flash(&fh, storage, AREA, SECTOR);
    memcpy(storage, data, size < AREA ? size : AREA); /* whatever a previous life left there */
    if (size >= TFA_STATE_RECORD_SIZE) {
        tfa_state_t st;
        uint32_t seq;
        (void)tfa_state_decode(data, &st, &seq);
    }
    tfa_state_log_t log;
    tfa_state_t st;
    int rc = tfa_state_load(&log, &fh.flash, 0, &st);
    if (rc != 0 && rc != -TFA_ERR_STATE_CORRUPT) {
        abort();
    }
    for (uint32_t i = 0; i < 8; i++) {
        st.security_floor += 1;
        st.download_offset = i;
        if (tfa_state_save(&log, &st) != 0) {
            abort(); /* a working flash must take every save */
        }
        tfa_state_log_t log2;
        tfa_state_t back;
        uint8_t want[TFA_STATE_RECORD_SIZE];
        uint8_t got[TFA_STATE_RECORD_SIZE];
        int rc2 = tfa_state_load(&log2, &fh.flash, 0, &back);
        tfa_state_encode(&st, 0, want); /* compare the fields, not the struct padding */
        tfa_state_encode(&back, 0, got);
        if (rc2 != 0 || memcmp(want, got, sizeof want) != 0) {
            fprintf(stderr, "save %u: load rc %d, seq %u\n", (unsigned)i, rc2, (unsigned)log2.seq);
            abort(); /* the newest save must win */
        }
    }
    return 0;
}
