#include "delta_host.h"

#include <stdlib.h>
#include <string.h>

#include "flash_host.h"
#include "tfa/delta.h"
#include "tfa/errors.h"

#define SECTOR 4096u

static uint32_t prv_round_up(uint32_t n)
{
    return (n + SECTOR - 1u) / SECTOR * SECTOR;
}

static int prv_feed_from(tfa_delta_t *d, const uint8_t *stream, uint32_t stream_len, uint32_t offset,
                         uint32_t chunk, uint32_t chunks_before_reboot, uint32_t *stopped_at)
{
    uint32_t fed = 0;
    while (offset < stream_len) {
        if (chunks_before_reboot && fed == chunks_before_reboot) {
            *stopped_at = offset;
            return 1; /* power cut: the caller resumes from the checkpoint */
        }
        uint32_t n = stream_len - offset < chunk ? stream_len - offset : chunk;
        int rc = tfa_delta_feed(d, &stream[offset], n);
        if (rc < 0) {
            return rc;
        }
        offset += n;
        fed++;
    }
    *stopped_at = offset;
    return 0;
}

int tfa_host_delta_apply(const uint8_t *base, uint32_t base_len, const uint8_t *stream, uint32_t stream_len,
                         uint8_t *out, uint32_t out_len, uint32_t chunk, uint32_t reboot_every)
{
    if (chunk == 0 || out_len == 0) {
        return -TFA_ERR_BAD_MESSAGE;
    }
    uint32_t out_addr = prv_round_up(base_len);
    uint32_t size = out_addr + prv_round_up(out_len);
    tfa_flash_host_t fh;
    if (tfa_flash_host_init(&fh, NULL, size, SECTOR) < 0) {
        return -TFA_ERR_FLASH_IO;
    }
    tfa_delta_t *d = malloc(sizeof *d);
    int rc = d == NULL ? -TFA_ERR_FLASH_IO : 0;
    if (rc == 0 && base_len > 0) {
        rc = fh.flash.program(fh.flash.ctx, 0, base, base_len);
    }
    if (rc == 0) {
        rc = tfa_delta_begin(d, &fh.flash, 0, base_len, out_addr, out_len);
    }
    uint32_t offset = 0;
    uint32_t last_resume = UINT32_MAX;
    while (rc == 0) {
        rc = prv_feed_from(d, stream, stream_len, offset, chunk, reboot_every, &offset);
        if (rc == 1) {
            tfa_delta_checkpoint_t cp = *tfa_delta_checkpoint(d);
            uint32_t resume_at = cp.valid ? cp.in_offset : 0;
            if (resume_at != last_resume) { /* reboot only after progress, or it would loop forever */
                rc = tfa_delta_resume(d, &fh.flash, 0, base_len, out_addr, out_len, &cp);
                offset = resume_at;
                last_resume = resume_at;
            } else {
                rc = 0;
            }
            continue;
        }
        break;
    }
    if (rc == 0) {
        rc = tfa_delta_finish(d);
    }
    if (rc == 0) {
        rc = fh.flash.read(fh.flash.ctx, out_addr, out, out_len);
    }
    free(d);
    tfa_flash_host_free(&fh);
    return rc;
}

uint32_t tfa_host_delta_state_size(void)
{
    return (uint32_t)sizeof(tfa_delta_t);
}
