/*
 * trec-tflm board support API: the only functions firmware (kernel tests, the TFLM app, the
 * benchmark protocol) may call. Each board directory (boards/<board>/) implements it.
 *
 * Boards: qemu_m7 (mps2-an500), qemu_m4 (mps2-an386), nucleo_f746zg, disco_f469ni.
 */
#ifndef TREC_BOARD_H
#define TREC_BOARD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Clocks, FPU, console UART at 115200 8N1, tick counter, heartbeat LED (where there is one). */
void board_init(void);

/* Console output (blocking). */
void board_putc(char c);
void board_write(const char *s, size_t n);
void board_puts(const char *s); /* no newline added */

/* Console input: next received byte, or -1 when none arrives within timeout_ms
 * (timeout_ms < 0: wait forever). Used by the EEMBC / MLPerf Tiny serial protocol. */
int board_getc(int32_t timeout_ms);

/* Free-running counter for timing code regions.
 * Real boards: DWT->CYCCNT core cycles. QEMU boards (run with -icount shift=0): executed
 * instructions, derived from a timer clocked by virtual time (resolution given by
 * board_tick_resolution(); DWT->CYCCNT reads 0 under QEMU). */
uint64_t board_ticks(void);
const char *board_tick_unit(void);     /* "cycles" or "instructions" */
uint32_t board_tick_resolution(void);  /* granularity of board_ticks() in units */
uint32_t board_core_clock_hz(void);    /* for converting cycles to time on real boards; 0 on QEMU */

void board_led_toggle(void);           /* no-op where there is no LED */

/* End the program. QEMU: semihosting exit with this code (becomes QEMU's exit status).
 * Real boards: print the code and stay in a low-power loop. */
void board_exit(int code) __attribute__((noreturn));

/* Board name as the firmware reports it, e.g. "nucleo_f746zg". */
const char *board_name(void);

#ifdef __cplusplus
}
#endif

#endif /* TREC_BOARD_H */
