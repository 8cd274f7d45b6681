/*
 * Generic Cortex-M4/M7 startup for trec-tflm boards: the 16 core exception vectors, the
 * reset handler and a fault reporter. The board supplies its external interrupt vectors as
 * an array in section ".vectors.irq" (placed right after the core vectors by sections.ld)
 * and implements board.h.
 *
 * Reset sequence: load SP from __stack_top (hardware does so from vector 0 on a reset, but a
 * debugger's `load; continue` or a jump to the entry point does not) -> enable the FPU (CPACR)
 * -> copy .data from flash -> zero .bss and
 * .ccm_bss -> plant the stack canary -> board_init() -> C++ constructors
 * (__libc_init_array) -> main() -> exit(main's return value) -> _exit -> board_exit.
 * board_init() is therefore called before main; it must be idempotent (apps may call it).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "board.h"
#include "board_extra.h"
#include "cortex_m.h"

/* Linker-script symbols (sections.ld). */
extern uint32_t __data_load_start[], __data_start[], __data_end[];
extern uint32_t __bss_start__[], __bss_end__[];
extern uint32_t __ccm_bss_start__[], __ccm_bss_end__[];

#define STACK_CANARY 0xC0DEF00Du

extern int main(void);
extern void __libc_init_array(void);

void Reset_Handler(void);
void board_reset_c(void);
void board_fault_entry(void);
void board_fault_report(const uint32_t *frame, uint32_t exc_return);

/* newlib's __libc_init_array calls _init() between .preinit_array and .init_array (and
 * __libc_fini_array calls _fini); with -nostartfiles nothing else defines them. */
void _init(void) {}
void _fini(void) {}

/* Handle for C++ static destructors registered with __cxa_atexit (crtbegin.o would define it;
 * -nostartfiles leaves it out). */
void *__dso_handle = 0;

typedef void (*vector_t)(void);

/* Core exception vectors. Every exception the firmware does not handle on purpose goes to
 * the fault reporter, which names the exception and exits with BOARD_FAULT_EXIT_CODE. */
__attribute__((used, section(".vectors.core"))) const vector_t board_core_vectors[16] = {
    (vector_t)(uintptr_t)__stack_top, /* 0: initial main stack pointer */
    Reset_Handler,                    /* 1: reset */
    board_fault_entry,                /* 2: NMI */
    board_fault_entry,                /* 3: HardFault */
    board_fault_entry,                /* 4: MemManage */
    board_fault_entry,                /* 5: BusFault */
    board_fault_entry,                /* 6: UsageFault */
    0, 0, 0, 0,                       /* 7-10: reserved */
    board_fault_entry,                /* 11: SVCall */
    board_fault_entry,                /* 12: DebugMonitor */
    0,                                /* 13: reserved */
    board_fault_entry,                /* 14: PendSV */
    board_fault_entry,                /* 15: SysTick */
};

/* Naked: no prologue may touch the stack before SP is set. movw/movt rather than a literal
 * load, so the value is in the instructions themselves (tests/test_board_builds.py reads it). */
__attribute__((naked, noreturn, used)) void Reset_Handler(void) {
  __asm__ volatile(
      "movw r0, #:lower16:__stack_top \n"
      "movt r0, #:upper16:__stack_top \n"
      "msr msp, r0                    \n"
      "b board_reset_c                \n");
}

__attribute__((noreturn, used)) void board_reset_c(void) {
  /* Full access to CP10/CP11 (the FPU) before any floating-point instruction runs. */
  CM_SCB_CPACR |= (0xFu << 20);
  cm_dsb();
  cm_isb();

  const uint32_t *src = __data_load_start;
  for (uint32_t *dst = __data_start; dst < __data_end;) *dst++ = *src++;
  for (uint32_t *p = __bss_start__; p < __bss_end__;) *p++ = 0;
  for (uint32_t *p = __ccm_bss_start__; p < __ccm_bss_end__;) *p++ = 0;
  /* Lowest word of the main stack: overwritten only when the stack overflowed. */
  *(volatile uint32_t *)__stack_limit = STACK_CANARY;

  board_init();
  __libc_init_array();
  exit(main());
}

/* Called by every board_exit() implementation before it ends the program: when the main
 * stack overflowed (canary overwritten) it says so and turns the exit code into
 * BOARD_FAULT_EXIT_CODE, since whatever the program computed is suspect. */
/* newlib's fflush, referenced weakly: flushing at exit must not drag stdio into firmware
 * that never uses it (a weak undefined reference does not pull in a library member). */
extern int fflush(void *stream) __attribute__((weak));
static volatile int in_fault;

int board_exit_check(int code) {
  /* Flush stdio, so text printed without a newline before board_exit() is not lost
   * (not after a fault: stdio may be what broke). */
  if (fflush && !in_fault) fflush(0);
  if (*(volatile uint32_t *)__stack_limit != STACK_CANARY) {
    board_puts("\r\n" BOARD_STACK_OVERFLOW_MARKER ": main stack canary overwritten\r\n");
    return BOARD_FAULT_EXIT_CODE;
  }
  return code;
}

uint32_t board_heap_free(void) {
  extern char *board_heap_break(void);
  return (uint32_t)((char *)__stack_limit - board_heap_break());
}

/* ---- fault reporting (no printf: the heap or stdio may be what is broken) ---- */

static void put_hex(const char *name, uint32_t v) {
  char buf[12];
  static const char digits[] = "0123456789abcdef";
  board_puts(" ");
  board_puts(name);
  buf[0] = '=';
  buf[1] = '0';
  buf[2] = 'x';
  for (int i = 0; i < 8; i++) buf[3 + i] = digits[(v >> (28 - 4 * i)) & 0xFu];
  board_write(buf, 11);
}

static const char *exception_name(uint32_t n) {
  switch (n) {
    case 2: return "NMI";
    case 3: return "HardFault";
    case 4: return "MemManage";
    case 5: return "BusFault";
    case 6: return "UsageFault";
    case 11: return "SVCall";
    case 12: return "DebugMonitor";
    case 14: return "PendSV";
    case 15: return "SysTick";
    default: return n >= 16 ? "unhandled IRQ" : "reserved";
  }
}

/* Exception entry: hand the stacked frame (MSP or PSP, from EXC_RETURN bit 2) to C. */
__attribute__((naked)) void board_fault_entry(void) {
  __asm__ volatile(
      "tst lr, #4        \n"
      "ite eq            \n"
      "mrseq r0, msp     \n"
      "mrsne r0, psp     \n"
      "mov r1, lr        \n"
      "b board_fault_report\n");
}

__attribute__((noreturn, used)) void board_fault_report(const uint32_t *frame, uint32_t exc_return) {
  uint32_t ipsr;
  in_fault = 1;
  __asm__ volatile("mrs %0, ipsr" : "=r"(ipsr));
  ipsr &= 0x1FFu;
  uint32_t cfsr = CM_SCB_CFSR;
  board_puts("\r\n" BOARD_FAULT_MARKER ": ");
  board_puts(exception_name(ipsr));
  put_hex("exception", ipsr);
  if (ipsr >= 16) put_hex("irq", ipsr - 16);
  /* Stacked frame: r0 r1 r2 r3 r12 lr pc xpsr */
  put_hex("pc", frame[6]);
  put_hex("lr", frame[5]);
  put_hex("xpsr", frame[7]);
  put_hex("sp", (uint32_t)(uintptr_t)frame);
  put_hex("exc_return", exc_return);
  put_hex("cfsr", cfsr);
  put_hex("hfsr", CM_SCB_HFSR);
  if (cfsr & CM_CFSR_MMARVALID) put_hex("mmfar", CM_SCB_MMFAR);
  if (cfsr & CM_CFSR_BFARVALID) put_hex("bfar", CM_SCB_BFAR);
  board_puts("\r\n");
  board_exit(BOARD_FAULT_EXIT_CODE);
}
