#include "tfa/errors.h"

#if TFA_NO_ERROR_NAMES
/* An MCU build keeps the names (1 KiB of flash) on the host: tinyfleet/signing/codes.py maps codes. */
const char *tfa_err_name(int code)
{
    (void)code;
    return "";
}
#else
const char *tfa_err_name(int code)
{
    if (code < 0) {
        code = -code;
    }
    switch (code) {
    case TFA_OK: return "OK";
    case TFA_ERR_TRUNCATED: return "TRUNCATED";
    case TFA_ERR_BAD_MAGIC: return "BAD_MAGIC";
    case TFA_ERR_UNSUPPORTED_FORMAT: return "UNSUPPORTED_FORMAT";
    case TFA_ERR_UNKNOWN_KEY: return "UNKNOWN_KEY";
    case TFA_ERR_BAD_SIGNATURE: return "BAD_SIGNATURE";
    case TFA_ERR_DIGEST_MISMATCH: return "DIGEST_MISMATCH";
    case TFA_ERR_SIZE_MISMATCH: return "SIZE_MISMATCH";
    case TFA_ERR_FIELD_RANGE: return "FIELD_RANGE";
    case TFA_ERR_KEY_UNWRAP: return "KEY_UNWRAP";
    case TFA_ERR_WRONG_HARDWARE: return "WRONG_HARDWARE";
    case TFA_ERR_RUNTIME_TOO_OLD: return "RUNTIME_TOO_OLD";
    case TFA_ERR_ROLLBACK_REFUSED: return "ROLLBACK_REFUSED";
    case TFA_ERR_REPLAYED: return "REPLAYED";
    case TFA_ERR_TOO_LARGE: return "TOO_LARGE";
    case TFA_ERR_ARENA_TOO_LARGE: return "ARENA_TOO_LARGE";
    case TFA_ERR_WRONG_BASE: return "WRONG_BASE";
    case TFA_ERR_BAD_STATE: return "BAD_STATE";
    case TFA_ERR_BAD_OFFSET: return "BAD_OFFSET";
    case TFA_ERR_NO_PREVIOUS: return "NO_PREVIOUS";
    case TFA_ERR_SELFTEST_FAILED: return "SELFTEST_FAILED";
    case TFA_ERR_NOT_ENCRYPTED: return "NOT_ENCRYPTED";
    case TFA_ERR_MODEL_RAM_TOO_SMALL: return "MODEL_RAM_TOO_SMALL";
    case TFA_ERR_FLASH_IO: return "FLASH_IO";
    case TFA_ERR_FLASH_NOT_ERASED: return "FLASH_NOT_ERASED";
    case TFA_ERR_STATE_CORRUPT: return "STATE_CORRUPT";
    case TFA_ERR_FRAME_CRC: return "FRAME_CRC";
    case TFA_ERR_FRAME_DECODE: return "FRAME_DECODE";
    case TFA_ERR_FRAME_TOO_LONG: return "FRAME_TOO_LONG";
    case TFA_ERR_UNKNOWN_MESSAGE: return "UNKNOWN_MESSAGE";
    case TFA_ERR_BAD_MESSAGE: return "BAD_MESSAGE";
    case TFA_ERR_MODEL_INVALID: return "MODEL_INVALID";
    case TFA_ERR_UNSUPPORTED_OP: return "UNSUPPORTED_OP";
    case TFA_ERR_ARENA_EXHAUSTED: return "ARENA_EXHAUSTED";
    case TFA_ERR_DELTA_CORRUPT: return "DELTA_CORRUPT";
    default: return "UNKNOWN";
    }
}
#endif
