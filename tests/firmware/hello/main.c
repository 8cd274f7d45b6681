/*
 * Tiny test firmware for the QEMU boards (tests/test_qemu_boards.py). What it does is chosen
 * at compile time:
 *   (default)              greet, check C++ constructors ran, printf a float, exit 0
 *   HELLO_EXIT_CODE=n      ... and return n from main
 *   HELLO_BOARD_EXIT=n     ... and call board_exit(n) instead of returning
 *   HELLO_ECHO             console echo until EOT (0x04), after one board_getc(10) timeout probe
 *   HELLO_TICKS            measure a loop of known instruction count with board_ticks()
 *   HELLO_FAULT            execute an undefined instruction (UsageFault -> HardFault)
 *   HELLO_STACK_OVERFLOW   recurse past the main stack, then return 0
 *   HELLO_BIG_FLASH=bytes  keep a const array of that size (link must fail when too big)
 *   HELLO_BIG_RAM=bytes    keep a zero-initialised array of that size in RAM
 *   HELLO_BIG_CCM=bytes    keep a zero-initialised array of that size in CCM (BOARD_CCM_BSS)
 */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "board.h"
#include "board_extra.h"

extern int hello_cxx_check(void); /* cxx_part.cc: 1 when its static constructor ran */

#if defined(HELLO_BIG_FLASH)
const uint8_t big_flash[HELLO_BIG_FLASH] = {1};
#endif
#if defined(HELLO_BIG_RAM)
uint8_t big_ram[HELLO_BIG_RAM];
#endif
#if defined(HELLO_BIG_CCM)
uint8_t big_ccm[HELLO_BIG_CCM] BOARD_CCM_BSS;
#endif

#if defined(HELLO_TICKS)
/* 2 * n instructions (subs + bne per iteration), n >= 1; inlined so no call overhead. */
#define SPIN(n)                                                                        \
  do {                                                                                 \
    uint32_t spin_n_ = (n);                                                            \
    __asm__ volatile("1: subs %0, %0, #1 \n bne 1b \n" : "+r"(spin_n_) : : "cc");      \
  } while (0)

static const uint32_t spin_counts[] = {1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007,
                                       1008, 1009, 1010, 1011, 1012, 1013, 1014, 1015,
                                       1016, 1017, 1018, 1019, 10000, 100000, 1000000, 3000000};

static void measure_ticks(void) {
  printf("unit=%s resolution=%lu\n", board_tick_unit(), (unsigned long)board_tick_resolution());
  for (int i = 0; i < 8; i++) {
    uint64_t t0 = board_ticks();
    uint64_t t1 = board_ticks();
    printf("empty d=%lu\n", (unsigned long)(t1 - t0));
  }
  for (unsigned i = 0; i < sizeof(spin_counts) / sizeof(spin_counts[0]); i++) {
    volatile uint32_t nv = spin_counts[i]; /* count not known to the compiler */
    uint32_t n = nv;
    uint64_t t0 = board_ticks();
    SPIN(n);
    uint64_t t1 = board_ticks();
    printf("spin n=%lu d=%lu\n", (unsigned long)n, (unsigned long)(t1 - t0));
  }
  /* Many short measurements at all phases of the timer (and across its wraps when the
   * board is built with a small TREC_QEMU_TIMER_RELOAD): spread of (d - 2n), monotonicity. */
  int32_t lo = INT32_MAX, hi = INT32_MIN;
  uint32_t backwards = 0;
  uint64_t prev = board_ticks();
  for (uint32_t i = 0; i < 3000; i++) {
    volatile uint32_t nv = 200 + (i * 7u) % 61u;
    uint32_t n = nv;
    uint64_t t0 = board_ticks();
    SPIN(n);
    uint64_t t1 = board_ticks();
    if (t0 < prev || t1 < t0) backwards++;
    prev = t1;
    int32_t e = (int32_t)(t1 - t0) - (int32_t)(2 * n);
    if (e < lo) lo = e;
    if (e > hi) hi = e;
  }
  printf("sweep min=%ld max=%ld backwards=%lu\n", (long)lo, (long)hi, (unsigned long)backwards);
  uint64_t now = board_ticks();
  printf("total hi=%lu lo=%lu\n", (unsigned long)(now >> 32), (unsigned long)(now & 0xFFFFFFFFu));
}
#endif

#if defined(HELLO_STACK_OVERFLOW)
static int __attribute__((noinline)) deep(int depth) {
  volatile uint8_t frame[1024];
  memset((void *)frame, depth, sizeof(frame));
  if (depth == 0) return frame[7];
  return deep(depth - 1) + frame[depth % 1024];
}
#endif

int main(void) {
  board_init(); /* already done by startup; must be harmless to repeat */
  printf("hello from %s\n", board_name());
  printf("cxx constructors: %s\n", hello_cxx_check() ? "ok" : "MISSING");
  printf("float: %.3f\n", 3.14159f * 2.0f);
  printf("heap free: %lu\n", (unsigned long)board_heap_free());
  board_led_toggle();

#if defined(HELLO_BIG_FLASH)
  printf("big_flash at %p: %u\n", (const void *)big_flash, big_flash[0]);
#endif
#if defined(HELLO_BIG_RAM)
  printf("big_ram at %p: %u\n", (void *)big_ram, big_ram[HELLO_BIG_RAM - 1]);
#endif
#if defined(HELLO_BIG_CCM)
  big_ccm[0] = 5;
  printf("big_ccm at %p: %u\n", (void *)big_ccm, big_ccm[0] + big_ccm[HELLO_BIG_CCM - 1]);
#endif

#if defined(HELLO_ECHO)
  printf("getc-timeout=%d\n", board_getc(10));
  printf("echo ready\n");
  fflush(stdout);
  for (;;) {
    int c = board_getc(-1);
    if (c == 0x04) break;
    board_putc((char)c);
  }
  printf("\necho done\n");
#endif

#if defined(HELLO_TICKS)
  measure_ticks();
#endif

#if defined(HELLO_FAULT)
  printf("about to fault\n");
  fflush(stdout);
  __asm__ volatile("udf #0");
  printf("survived the fault?!\n");
#endif

#if defined(HELLO_STACK_OVERFLOW)
  printf("recursing\n");
  printf("deep: %d\n", deep(24)); /* ~25 KB of frames on a 16 KB stack */
#endif

#if defined(HELLO_BOARD_EXIT)
  printf("calling board_exit(%d), no newline", HELLO_BOARD_EXIT); /* board_exit flushes stdio */
  board_exit(HELLO_BOARD_EXIT);
#endif

#if defined(HELLO_EXIT_CODE)
  printf("returning %d\n", HELLO_EXIT_CODE);
  return HELLO_EXIT_CODE;
#else
  printf("bye\n");
  return 0;
#endif
}
