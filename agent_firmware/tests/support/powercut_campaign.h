/* The power-cut campaign driver shared by test_powercut.c (raw installs) and test_powercut_delta.c
 * (compressed and delta installs). A device that runs good_active.tfpkg (sequence PC_OLD_SEQ, confirmed),
 * or nothing on a fresh campaign, installs a package of sequence PC_NEW_SEQ step by step: begin, chunks,
 * end, activate, selftest, confirm. A reference run counts the install's flash program/erase operations;
 * then for every cut index k and tear mode the power goes during operation k, the device reboots (in some
 * runs losing power again during the boot), the invariant is checked, the install is resumed (in half the
 * runs with a second cut) and the end state is checked:
 *   - the state area parses (boot succeeds, no STATE_CORRUPT unless a fresh device's first record tore);
 *   - the active model is complete and authentic, the old or the new one, the old one still in slot 0;
 *   - a new model whose confirm returned 0 stays active and confirmed, a trial is never the old model;
 *   - optionally: slot 0 keeps its bytes (a delta's base), a download resumes at its recorded offset;
 *   - at the end: the new model confirmed, floor 3, the old one kept, optionally byte for byte a file.
 * Prefix pc_. */
#ifndef POWERCUT_CAMPAIGN_H
#define POWERCUT_CAMPAIGN_H

#include <stdint.h>

#include "tv_support.h"

#define PC_OLD_SEQ 5u
#define PC_NEW_SEQ 6u
#define PC_MODE_COUNT 4u /* tear modes: nothing applied, half applied, garbage, complete */

/* Where the cuts fall. Each campaign keeps its own numbers so that its runs stay the same ones. */
typedef struct pc_schedule {
    uint32_t seed_base;        /* GARBAGE seed of the cut at k: seed_base + k * seed_step + mode */
    uint32_t seed_step;
    uint32_t boot_seed_offset; /* seed of a cut during the reboot: k + boot_seed_offset */
    int boot_cut_on_odd_runs;  /* 1: the reboot is cut when k + mode is odd; 0: in the HALF, GARBAGE modes */
    uint32_t resume_step;      /* a resume is cut at operation 1 + (k * resume_step + mode) % resume_span */
    uint32_t resume_span;
} pc_schedule_t;

typedef struct pc_config {
    const char *package;         /* vector file the campaign installs (sequence PC_NEW_SEQ) */
    const char *expect_model;    /* vector file the final model must equal byte for byte, or NULL */
    uint32_t sector;             /* sector size, 0: device.txt's */
    uint32_t chunk;              /* download chunk of the campaign */
    uint32_t old_model_chunk;    /* download chunk of good_active.tfpkg before the campaign */
    int fresh;                   /* 1: first install on an empty device (no old model) */
    int check_base_slot;         /* 1: slot 0 (the old model, a delta's base) must never change */
    int check_resume_offset;     /* 1: a download in progress resumes at the offset its record holds */
    tfa_delta_t *workspace;      /* decoder workspace for compressed and delta payloads, or NULL */
    /* Encrypted package: vector files of its 80-byte key wrap (sent right after every begin) and of the
     * device's X25519 private key; both NULL for a clear package. */
    const char *wrap;
    const char *device_key;
    /* Non-NULL: the old model comes encrypted too (encrypted/good_active.tfpkg with this wrap vector),
     * so it lies encrypted at rest (PROTOCOL 6.6) and a delta's base is read back through the key
     * stream; needs device_key. NULL: good_active.tfpkg in clear. */
    const char *old_wrap;
    pc_schedule_t schedule;
} pc_config_t;

typedef struct pc_counts {
    uint32_t cut_points;           /* flash operations of the reference install */
    uint32_t compactions;          /* state-log sector switches during the reference install */
    uint32_t checkpoints;          /* state records written by the chunk steps of the reference install */
    uint32_t runs;
    uint32_t resume_cuts;          /* runs whose resume lost power too */
    uint32_t boot_cuts;            /* reboots that lost power during the boot itself */
    uint32_t resumed_mid_download; /* reboots that found a download to resume past its start */
} pc_counts_t;

typedef struct pc_campaign {
    pc_config_t cfg;
    tv_device_t *dev;
    uint8_t *pkg;
    uint32_t pkg_len;
    uint8_t *model;              /* expect_model's bytes, or NULL */
    uint32_t model_len;
    uint8_t *snapshot;           /* the flash every run starts from */
    uint32_t chunk_count;
    uint8_t *wrap;               /* cfg.wrap's 80 bytes, or NULL */
    uint8_t enc_private[32];     /* the device key pair the device config points at (encrypted) */
    uint8_t enc_public[32];
    pc_counts_t counts;
} pc_campaign_t;

/* Reads the vectors, makes the device (max_trial_boots 2), boots it and installs good_active.tfpkg
 * unless fresh; the test may then prepare the flash further. Returns 0, or -1 after counting a failure
 * (nothing to close). */
int pc_open(pc_campaign_t *c, const pc_config_t *cfg);

/* Takes the flash as it is now as the start of every run, then makes the reference run, which fills
 * counts.cut_points, compactions and checkpoints. */
void pc_measure(pc_campaign_t *c);

/* A run for every cut point and tear mode (all_modes 0: one mode per cut point, in turn), stopping after
 * 20 failed checks. Fills the other counts; returns 1 if the invariant held in every run, else 0. */
int pc_cut_everywhere(pc_campaign_t *c, int all_modes);

void pc_close(pc_campaign_t *c);

#endif
