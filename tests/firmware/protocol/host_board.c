/*
 * board.h on the host (stdin/stdout), to unit-test the protocol module without a target:
 * tests/test_serial_protocol.py compiles ee_protocol.c + model.c + main.c with this file.
 * Ticks advance by 1000 per call, so timings are deterministic.
 */
#include <stdio.h>
#include <stdlib.h>

#include "board.h"

static uint64_t s_ticks;

void board_init(void) { setvbuf(stdout, NULL, _IOFBF, 1 << 16); }
void board_putc(char c) { putchar(c); }
void board_write(const char *s, size_t n) { fwrite(s, 1, n, stdout); }
void board_puts(const char *s) { fputs(s, stdout); }

int board_getc(int32_t timeout_ms)
{
    int c;
    (void)timeout_ms;
    fflush(stdout);
    c = getchar();
    if (c == EOF) {
        exit(3); /* input ended without `exit%` */
    }
    return c;
}

uint64_t board_ticks(void) { return s_ticks += 1000u; }
const char *board_tick_unit(void) { return "cycles"; }
uint32_t board_tick_resolution(void) { return 1; }
uint32_t board_core_clock_hz(void) { return 100000000u; }
void board_led_toggle(void) {}

void board_exit(int code)
{
    fflush(stdout);
    exit(code);
}

const char *board_name(void) { return "host"; }
