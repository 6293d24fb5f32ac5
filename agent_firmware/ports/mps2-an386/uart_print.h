/* Text output on UART0 for the bench firmwares (crypto, delta): one line per figure, parsed by
 * bench/crypto_m4.py and bench/delta_m4.py. Header-only so a bench image links nothing it does not use. */
#ifndef UART_PRINT_H
#define UART_PRINT_H

#include <stdint.h>

#include "board.h"

static inline void uart_puts(const char *s)
{
    while (*s != '\0') {
        board_uart_putc((uint8_t)*s++);
    }
}

static inline void uart_putu(uint32_t v)
{
    char buf[11];
    int i = 10;
    buf[i] = '\0';
    do {
        buf[--i] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v != 0u);
    uart_puts(&buf[i]);
}

#endif
