/*
 * trec-tflm: what the STM32 boards (nucleo_f746zg, disco_f469ni) share, compiled into each of
 * them (board.mk lists stm32_common.c with the board's board.c). Written for trec-tflm from the
 * reference manuals RM0385 (F746) and RM0386 (F469); no ST code.
 *
 * stm32_common.c implements, for any STM32F4/F7 board:
 *   ticks    DWT->CYCCNT extended to 64 bits (board_ticks), TIM6 interrupting once a second so a
 *            32-bit wrap is never missed;
 *   clock    the steps around the board's choice of PLL source: to HSI before reconfiguring
 *            (stm32_clock_begin), HSE start-up (stm32_hse_start), and PLL on, over-drive, flash
 *            wait states, prescalers, lock and switch (stm32_clock_finish);
 *   console  the interrupt-fed 256-byte receive ring (stm32_console_received, board_getc) and
 *            board_putc / board_write / board_puts;
 *   GPIO     stm32_gpio_mode, stm32_gpio_af;
 *   board    board_init (the order of the steps), board_exit, the IRQ vector table.
 *
 * Each board directory has a stm32_board.h (included here) with its device registers, its
 * clock_config.h and the names that differ between the families:
 *   STM32_IRQ_COUNT, STM32_IRQ_USART3, STM32_IRQ_TIM6_DAC   the device's IRQ numbers
 *   STM32_USART3_TX_EMPTY(), STM32_USART3_TX_DONE(), STM32_USART3_WRITE(byte)
 *   STM32_PWR_CR, STM32_PWR_CSR and their VOS_MASK, VOS_SCALE1, ODEN, ODSWEN, ODRDY, ODSWRDY bits
 *   STM32_DWT_UNLOCK                                         1 where the DWT is locked (Cortex-M7)
 * and its board.c defines the hooks below.
 */
#ifndef TREC_STM32_COMMON_H
#define TREC_STM32_COMMON_H

#include <stdint.h>

#include "stm32_board.h"

/* Time limits while still on HSI 16 MHz: a crystal starts in a few ms, the PLL locks and the
 * over-drive regulator settles in well under 1 ms; these bounds are generous. */
#define STM32_HSE_STARTUP_CYCLES (CLK_HSI_HZ / 10u) /* 100 ms */
#define STM32_LOCK_CYCLES (CLK_HSI_HZ / 10u)        /* 100 ms for PLL lock, over-drive, switches */

/* Set by the board's clock set-up: HCLK (the core clock), USART3's kernel clock (PCLK1) and
 * TIM6's clock; HSI 16 MHz until the PLL runs. */
extern uint32_t stm32_core_hz;
extern uint32_t stm32_pclk1_hz;
extern uint32_t stm32_timclk_hz;
/* Set when the clock is not the nominal one: board_init prints it as a warning. */
extern const char *stm32_clock_note;
/* Set once USART3 is configured: before that board_putc drops characters, so a fault during
 * start-up reaches board_exit (red LED) instead of spinning on a TXE flag that never rises. */
extern volatile int stm32_console_ready;

/* Wait until (reg & mask) == want; gives up after `cycles` DWT cycles or as many polls (so it
 * also ends if the cycle counter were not running). 1 when the bits got there. */
int stm32_wait_bits(volatile uint32_t *reg, uint32_t mask, uint32_t want, uint32_t cycles);

/* The clock set-up's common steps. begin: PWR clock on, run from HSI (the reset state, but a
 * debugger may have left something else behind), PLL off, clock interrupts off, voltage scale 1.
 * hse_start: HSE on, from the crystal (bypass 0) or an external clock (bypass 1); 1 when ready.
 * finish: with RCC_PLLCFGR written, PLL on, over-drive, flash wait states CLK_FLASH_WS, the
 * prescalers of clk_cfgr_prescalers(), PLL lock and the switch to it; stm32_core_hz,
 * stm32_pclk1_hz and stm32_timclk_hz from clock_config.h. On a failure the board stays on HSI
 * 16 MHz with every prescaler /1 and stm32_clock_note says what failed (stm32_clock_fail). */
void stm32_clock_begin(void);
int stm32_hse_start(int bypass);
void stm32_clock_finish(void);
void stm32_clock_fail(const char *note);

void stm32_gpio_mode(uint32_t port, uint32_t pin, uint32_t mode);
void stm32_gpio_af(uint32_t port, uint32_t pin, uint32_t af); /* and the pin to alternate function */

/* From the board's USART3 interrupt: one received byte into the console ring (dropped, and
 * counted, when the ring is full). */
void stm32_console_received(uint8_t byte);

/* ---- hooks each STM32 board.c defines (called by board_init / board_exit in this order) ---- */
void stm32_board_clock_init(void);   /* PLL source and plan, then stm32_clock_finish() */
void stm32_board_caches_init(void);  /* flash accelerator, core caches */
void stm32_board_leds_init(void);    /* all LEDs configured and off */
void stm32_board_led_run(int on);    /* the heartbeat LED (green) */
void stm32_board_led_exit(int code); /* the exit LED: code 0 or not */
void stm32_board_console_init(void); /* USART3 pins and registers, stm32_console_ready = 1, IRQ on */
void stm32_board_usart3_irq(void);   /* USART3 interrupt: clear errors, stm32_console_received() */

#endif /* TREC_STM32_COMMON_H */
