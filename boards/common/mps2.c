/*
 * board.h for the QEMU boards qemu_m7 (mps2-an500, Cortex-M7) and qemu_m4 (mps2-an386,
 * Cortex-M4): both FPGA images put the same CMSDK APB peripherals at the same addresses.
 *
 *   console  CMSDK APB UART0 @ 0x40004000 (QEMU: -serial ..., first serial port)
 *   ticks    CMSDK APB Timer0 @ 0x40000000, 32-bit down counter on the 25 MHz SYSCLK, IRQ 8
 *   exit     semihosting SYS_EXIT_EXTENDED (QEMU: -semihosting-config enable=on)
 *   LED      FPGAIO LED register @ 0x40028000 (no visible effect in QEMU)
 *
 * Instruction counting: with "-icount shift=0" QEMU advances virtual time by exactly 1 ns
 * per executed instruction, and the timer ticks every 40 ns of virtual time (25 MHz), i.e.
 * every 40 instructions. board_ticks() refines that to the exact instruction: it finds a
 * tick edge with a 4-instruction polling loop, then reads the counter on consecutive
 * instructions around the following edge (see board_ticks and docs/BOARDS.md).
 * Build with -DTREC_QEMU_COARSE_TICKS to get the plain timer value (resolution 40).
 */
#include <stdint.h>

#include "board.h"
#include "board_extra.h"
#include "cortex_m.h"
#include "semihosting.h"

#if defined(TREC_BOARD_QEMU_M7)
#define MPS2_BOARD_NAME "qemu_m7"
#elif defined(TREC_BOARD_QEMU_M4)
#define MPS2_BOARD_NAME "qemu_m4"
#else
#error "mps2.c: define TREC_BOARD_QEMU_M7 or TREC_BOARD_QEMU_M4 (boards/qemu_*/board.mk does)"
#endif

#define MPS2_SYSCLK_HZ 25000000u

/* CMSDK APB UART */
#define UART0_BASE 0x40004000u
#define UART_DATA CM_REG32(UART0_BASE + 0x00u)
#define UART_STATE CM_REG32(UART0_BASE + 0x04u)
#define UART_CTRL CM_REG32(UART0_BASE + 0x08u)
#define UART_INTCLEAR CM_REG32(UART0_BASE + 0x0Cu)
#define UART_BAUDDIV CM_REG32(UART0_BASE + 0x10u)
#define UART_STATE_TXFULL (1u << 0)
#define UART_STATE_RXFULL (1u << 1)
#define UART_STATE_TXOVR (1u << 2)
#define UART_STATE_RXOVR (1u << 3)
#define UART_CTRL_TXEN (1u << 0)
#define UART_CTRL_RXEN (1u << 1)

/* UART1 is only used to wake QEMU's main loop: see uart_rx_kick(). */
#define UART1_DATA CM_REG32(0x40005000u)

/* CMSDK APB Timer0 */
#define TIMER0_BASE 0x40000000u
#define TIMER0_IRQ 8
#define TIMER_CTRL CM_REG32(TIMER0_BASE + 0x00u)
#define TIMER_VALUE_ADDR (TIMER0_BASE + 0x04u)
#define TIMER_VALUE CM_REG32(TIMER_VALUE_ADDR)
#define TIMER_RELOAD CM_REG32(TIMER0_BASE + 0x08u)
#define TIMER_INTSTATUS CM_REG32(TIMER0_BASE + 0x0Cu) /* write 1: clear */
#define TIMER_CTRL_EN (1u << 0)
#define TIMER_CTRL_IRQEN (1u << 3)

/* FPGA IO */
#define FPGAIO_LED CM_REG32(0x40028000u)

/* Timer0 reload value: the counter runs RELOAD..0, i.e. RELOAD+1 ticks per wrap (QEMU's
 * CMSDK timer waits one period at 0 before reloading). Tests build with a small value to
 * exercise the wrap counting that extends the count to 64 bits. */
#ifndef TREC_QEMU_TIMER_RELOAD
#define TREC_QEMU_TIMER_RELOAD 0xFFFFFFFFu
#endif
#define TIMER_PERIOD_TICKS ((uint64_t)TREC_QEMU_TIMER_RELOAD + 1u)

/* Virtual nanoseconds (= instructions under -icount shift=0) per timer tick. */
#define NS_PER_TICK (1000000000u / MPS2_SYSCLK_HZ)
/* Instructions per iteration of the edge-finding loop in board_ticks(). */
#define EDGE_LOOP_INSNS 4u
/* nops between the end of that loop and the 7-read burst (see board_ticks). With the loop's
 * n-th read first seeing an edge e instructions after entry (e in 1..40), the burst's j is
 * e + 39 - EDGE_BURST_DELAY - 4n; 31 keeps it in 2..5, away from both ends of 0..7. */
#ifndef EDGE_BURST_DELAY
#define EDGE_BURST_DELAY 31
#endif
#define MPS2_STR2(x) #x
#define MPS2_STR(x) MPS2_STR2(x)

static volatile uint32_t timer_wraps; /* timer periods completed (Timer0 IRQ) */
static int board_ready;

static void timer0_irq(void) {
  TIMER_INTSTATUS = 1u;
  timer_wraps++;
}

/* External interrupt vectors 0..31 of the MPS2 images (placed after the core vectors). */
typedef void (*vector_t)(void);
#define U board_fault_entry /* reports "unhandled IRQ" and exits */
__attribute__((used, section(".vectors.irq"))) const vector_t board_irq_vectors[32] = {
    U, U, U, U, U, U, U, U, timer0_irq, U, U, U, U, U, U, U,
    U, U, U, U, U, U, U, U, U,          U, U, U, U, U, U, U,
};
#undef U

/*
 * Make QEMU look at UART0's input again. QEMU's main loop only polls a serial backend while
 * the UART can take a byte, and re-evaluates that only when it wakes up. Under -icount
 * nothing wakes it on its own (virtual-time timers run in the CPU thread), so input that
 * arrives after it went to sleep with the receiver disabled (at reset) would never be
 * delivered. Reading a UART's DATA register wakes it (qemu_chr_fe_accept_input); reading
 * UART0's would throw away a byte that arrived in between, so we read UART1's, whose
 * backend the runner sets to "null" (-serial <uart0> -serial null): it never receives
 * anything, and without a backend the read is a harmless no-op. Guest-visible state and
 * instruction counts are unaffected.
 */
static void uart_rx_kick(void) { (void)UART1_DATA; }

void board_init(void) {
  if (board_ready) return;
  board_ready = 1;

  UART_CTRL = 0;
  UART_BAUDDIV = MPS2_SYSCLK_HZ / 115200u; /* 217: 115200 baud (QEMU ignores the rate) */
  UART_STATE = UART_STATE_TXOVR | UART_STATE_RXOVR; /* write 1 to clear overruns */
  UART_CTRL = UART_CTRL_TXEN | UART_CTRL_RXEN;
  uart_rx_kick();

  TIMER_CTRL = 0;
  TIMER_RELOAD = TREC_QEMU_TIMER_RELOAD;
  CM_REG32(TIMER_VALUE_ADDR) = TREC_QEMU_TIMER_RELOAD;
  TIMER_INTSTATUS = 1u;
  timer_wraps = 0;
  CM_NVIC_ICPR(TIMER0_IRQ) = CM_NVIC_BIT(TIMER0_IRQ);
  CM_NVIC_ISER(TIMER0_IRQ) = CM_NVIC_BIT(TIMER0_IRQ);
  TIMER_CTRL = TIMER_CTRL_EN | TIMER_CTRL_IRQEN;
  cm_enable_irq();
}

void board_putc(char c) {
  while (UART_STATE & UART_STATE_TXFULL) {
  }
  UART_DATA = (uint8_t)c;
}

void board_write(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) board_putc(s[i]);
}

void board_puts(const char *s) {
  while (*s) board_putc(*s++);
}

/* Timer ticks since board_init as 64 bits; v is a Timer0 VALUE read with IRQs masked. */
static uint64_t ticks_from_value(uint32_t v) {
  uint64_t wraps = timer_wraps;
  uint32_t pending = TIMER_INTSTATUS & 1u; /* wrap signalled, IRQ not yet taken */
  /* The IRQ fires when the counter reaches 0, which it then shows for one more tick: that
   * tick is the last of the period just counted (or about to be counted) as a wrap. */
  if (v == 0) return (wraps + pending) * TIMER_PERIOD_TICKS - 1u;
  /* A pending wrap has already reloaded the counter when v is high. */
  if (pending && v > TREC_QEMU_TIMER_RELOAD / 2u) wraps++;
  return wraps * TIMER_PERIOD_TICKS + (TREC_QEMU_TIMER_RELOAD - v);
}

static uint64_t raw_ticks(void) {
  uint32_t primask = cm_get_primask();
  cm_disable_irq();
  uint64_t t = ticks_from_value(TIMER_VALUE);
  cm_set_primask(primask);
  return t;
}

uint64_t board_ticks(void) {
#if defined(TREC_QEMU_COARSE_TICKS)
  return raw_ticks() * NS_PER_TICK;
#else
  if (!(TIMER_CTRL & TIMER_CTRL_EN)) return raw_ticks() * NS_PER_TICK; /* would never see an edge */
  uint32_t primask = cm_get_primask();
  cm_disable_irq();
  uint32_t v0, v, n = 0, j, b0, b1, b2, b3, b4, b5, b6;
  /*
   * Under -icount shift=0 an MMIO read sees the virtual time of its own instruction, and
   * the timer value changes every 40 instructions (see docs/BOARDS.md).
   *
   * Phase 1: read the counter until it changes, 4 instructions per iteration (ldr, adds,
   *   cmp, beq). If the first change is seen by read n, the entry lies 4n instructions
   *   before that tick edge, give or take 3.
   * Phase 2: the next edge comes exactly 40 instructions after that one. After a fixed run
   *   of EDGE_BURST_DELAY nops, read the counter on 7 consecutive instructions; j, the number
   *   of those reads that still see the old value (2..5 with the delay chosen), places that
   *   edge, and so the entry, to the instruction: entry = edge - 4n - j + constant.
   * Then count j without branches, and pad with 12-n iterations of another 4-instruction
   *   loop: every call executes the same instructions whatever n and j were, so a measured
   *   region contains one call's constant cost, never a variable part of it.
   */
  __asm__ volatile(
      "ldr   %[v0], [%[p]]       \n"
      "1:                        \n"
      "ldr   %[v], [%[p]]        \n"
      "adds  %[n], %[n], #1      \n"
      "cmp   %[v], %[v0]         \n"
      "beq   1b                  \n"
      ".rept " MPS2_STR(EDGE_BURST_DELAY) "\n"
      "nop                       \n"
      ".endr                     \n"
      "ldr   %[b0], [%[p]]       \n"
      "ldr   %[b1], [%[p]]       \n"
      "ldr   %[b2], [%[p]]       \n"
      "ldr   %[b3], [%[p]]       \n"
      "ldr   %[b4], [%[p]]       \n"
      "ldr   %[b5], [%[p]]       \n"
      "ldr   %[b6], [%[p]]       \n"
      "movs  %[j], #0            \n"
      "cmp   %[b0], %[v]         \n"
      "it    eq                  \n"
      "addeq %[j], %[j], #1      \n"
      "cmp   %[b1], %[v]         \n"
      "it    eq                  \n"
      "addeq %[j], %[j], #1      \n"
      "cmp   %[b2], %[v]         \n"
      "it    eq                  \n"
      "addeq %[j], %[j], #1      \n"
      "cmp   %[b3], %[v]         \n"
      "it    eq                  \n"
      "addeq %[j], %[j], #1      \n"
      "cmp   %[b4], %[v]         \n"
      "it    eq                  \n"
      "addeq %[j], %[j], #1      \n"
      "cmp   %[b5], %[v]         \n"
      "it    eq                  \n"
      "addeq %[j], %[j], #1      \n"
      "cmp   %[b6], %[v]         \n"
      "it    eq                  \n"
      "addeq %[j], %[j], #1      \n"
      "rsb   %[v0], %[n], #12    \n"
      "2:                        \n"
      "nop                       \n"
      "nop                       \n"
      "subs  %[v0], %[v0], #1    \n"
      "bne   2b                  \n"
      : [v0] "=&r"(v0), [v] "=&r"(v), [n] "+&r"(n), [j] "=&r"(j), [b0] "=&r"(b0), [b1] "=&r"(b1),
        [b2] "=&r"(b2), [b3] "=&r"(b3), [b4] "=&r"(b4), [b5] "=&r"(b5), [b6] "=&r"(b6)
      : [p] "r"(TIMER_VALUE_ADDR)
      : "cc", "memory");
  /* Tick index of the edge that read n saw; the burst's edge is the next one. */
  uint64_t edge = ticks_from_value(v);
  cm_set_primask(primask);
  if (j >= 7) {
    /* Burst missed the edge (only without -icount): phase 1's estimate, good to 4. */
    return edge * NS_PER_TICK - (uint64_t)n * EDGE_LOOP_INSNS;
  }
  return (edge + 1u) * NS_PER_TICK - j - (uint64_t)n * EDGE_LOOP_INSNS;
#endif
}

const char *board_tick_unit(void) { return "instructions"; }

uint32_t board_tick_resolution(void) {
#if defined(TREC_QEMU_COARSE_TICKS)
  return NS_PER_TICK;
#else
  return 1;
#endif
}

uint32_t board_core_clock_hz(void) { return 0; }

int board_getc(int32_t timeout_ms) {
  /* Timeouts are host wall-clock time (semihosting SYS_ELAPSED, nanoseconds in QEMU), so a
   * serial host sees the same behaviour as with a real board. Virtual time is no use here:
   * under -icount it advances with the polling loop's instructions, not with the host.
   * Should SYS_ELAPSED fail, virtual time is used (1 ms = 25000 timer ticks). */
  uint64_t start = 0, now = 0;
  int wall = 0;
  if (timeout_ms > 0) wall = semihost_elapsed(&start) == 0;
  uint64_t vdeadline = raw_ticks() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0) * (MPS2_SYSCLK_HZ / 1000u);
  uint64_t limit_ns = (uint64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000000u;
  if (!(UART_STATE & UART_STATE_RXFULL)) uart_rx_kick();
  for (;;) {
    if (UART_STATE & UART_STATE_RXFULL) return (int)(UART_DATA & 0xFFu);
    if (timeout_ms < 0) continue;
    if (timeout_ms == 0) return -1;
    if (wall) {
      if (semihost_elapsed(&now) == 0 && now - start >= limit_ns) return -1;
    } else if (raw_ticks() >= vdeadline) {
      return -1;
    }
  }
}

void board_led_toggle(void) { FPGAIO_LED ^= 1u; }

void board_exit(int code) {
  code = board_exit_check(code);
  /* Let the UART drain (QEMU transmits immediately unless its backend is blocked). */
  while (UART_STATE & UART_STATE_TXFULL) {
  }
  semihost_exit(code);
  for (;;) {
  }
}

const char *board_name(void) { return MPS2_BOARD_NAME; }
