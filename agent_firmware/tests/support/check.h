/* Assertions shared by the C test programs: a failed CHECK says where and why, counts the failure in
 * test_failures and lets the test go on, so that one run reports every broken expectation. */
#ifndef CHECK_H
#define CHECK_H

#include <stdio.h>

#include "tfa/errors.h"

extern int test_failures;

#define CHECK(cond, ...)                                                                              \
    do {                                                                                              \
        if (!(cond)) {                                                                                \
            fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond);                 \
            fprintf(stderr, __VA_ARGS__);                                                             \
            fputc('\n', stderr);                                                                      \
            test_failures++;                                                                          \
        }                                                                                             \
    } while (0)

/* got == want for 0 / -TFA_ERR_x codes, with the error names in the message. */
#define CHECK_RC(got, want, what)                                                                     \
    do {                                                                                              \
        int check_got_ = (got);                                                                       \
        int check_want_ = (want);                                                                     \
        CHECK(check_got_ == check_want_, "%s: got %d (%s), want %d (%s)", (what), check_got_,         \
              tfa_err_name(check_got_), check_want_, tfa_err_name(check_want_));                      \
    } while (0)

/* The end of main: prints "<name>: ok" or the failure count and returns the exit status (0 or 1). */
int test_report(const char *name);

#endif
