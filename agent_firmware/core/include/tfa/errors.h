/* Error codes shared by the runtime, the wire protocol and the Python signing errors.
 * The table and its ranges are specified in docs/PROTOCOL.md section 2. Functions return
 * TFA_OK (0) or a negative code: return -TFA_ERR_x. */
#ifndef TFA_ERRORS_H
#define TFA_ERRORS_H

typedef enum {
    TFA_OK = 0,
    /* 1..31: package format */
    TFA_ERR_TRUNCATED = 1,
    TFA_ERR_BAD_MAGIC = 2,
    TFA_ERR_UNSUPPORTED_FORMAT = 3,
    TFA_ERR_UNKNOWN_KEY = 4,
    TFA_ERR_BAD_SIGNATURE = 5,
    TFA_ERR_DIGEST_MISMATCH = 6,
    TFA_ERR_SIZE_MISMATCH = 7,
    TFA_ERR_FIELD_RANGE = 8,
    TFA_ERR_KEY_UNWRAP = 9,
    /* 32..63: install policy and state machine */
    TFA_ERR_WRONG_HARDWARE = 32,
    TFA_ERR_RUNTIME_TOO_OLD = 33,
    TFA_ERR_ROLLBACK_REFUSED = 34,
    TFA_ERR_REPLAYED = 35,
    TFA_ERR_TOO_LARGE = 36,
    TFA_ERR_ARENA_TOO_LARGE = 37,
    TFA_ERR_WRONG_BASE = 38,
    TFA_ERR_BAD_STATE = 39,
    TFA_ERR_BAD_OFFSET = 40,
    TFA_ERR_NO_PREVIOUS = 41,
    TFA_ERR_SELFTEST_FAILED = 42,
    TFA_ERR_NOT_ENCRYPTED = 43,
    TFA_ERR_MODEL_RAM_TOO_SMALL = 44,
    /* 64..95: storage */
    TFA_ERR_FLASH_IO = 64,
    TFA_ERR_FLASH_NOT_ERASED = 65,
    TFA_ERR_STATE_CORRUPT = 66,
    /* 96..127: wire protocol */
    TFA_ERR_FRAME_CRC = 96,
    TFA_ERR_FRAME_DECODE = 97,
    TFA_ERR_FRAME_TOO_LONG = 98,
    TFA_ERR_UNKNOWN_MESSAGE = 99,
    TFA_ERR_BAD_MESSAGE = 100,
    /* 128..159: inference engine */
    TFA_ERR_MODEL_INVALID = 128,
    TFA_ERR_UNSUPPORTED_OP = 129,
    TFA_ERR_ARENA_EXHAUSTED = 130,
    /* 160..191: delta decoder */
    TFA_ERR_DELTA_CORRUPT = 160
} tfa_err_t;

/* Builds with TFA_NO_ERROR_NAMES=1 (the MCU firmware) leave the names out: tfa_err_name returns "" and
 * ERROR responses carry no detail; the host names codes (tinyfleet/signing/codes.py). */
#ifndef TFA_NO_ERROR_NAMES
#define TFA_NO_ERROR_NAMES 0
#endif

/* Short stable name of an error code, for logs ("BAD_SIGNATURE"); "UNKNOWN" if not in the table; "" in
 * a TFA_NO_ERROR_NAMES build. */
const char *tfa_err_name(int code);

#endif
