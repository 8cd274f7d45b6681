/*
 * board.h for NUCLEO_F746ZG (STM32F746ZG, Cortex-M7 with FPv5-SP FPU, 4 KB I- and 4 KB D-cache).
 * Written for trec-tflm from RM0385 and UM1974 (NUCLEO-144 user manual); no ST code.
 *
 *   clock    HSE 8 MHz bypass from the ST-LINK MCO -> PLL 216 MHz, scale 1 + over-drive,
 *            7 flash wait states, L1 I/D caches on (clock_config.h). The image runs from the
 *            AXIM alias of flash (0x08000000), where the M7's L1 caches serve it; the ART
 *            accelerator and prefetch (enabled too) only serve the ITCM alias (0x00200000),
 *            i.e. the boot's vector fetches, not this code.
 *            Falls back to an 8 MHz crystal (X3, not fitted by default) and then to HSI 16 MHz
 *            through the same PLL (216 MHz either way); if the PLL cannot be started the board
 *            stays on HSI 16 MHz and says so on the console.
 *   console  USART3 PD8 (TX) / PD9 (RX), AF7 = the ST-LINK virtual COM port; 115200 8N1;
 *            received bytes go through an interrupt-driven 256-byte ring buffer.
 *   ticks    DWT->CYCCNT core cycles, extended to 64 bits; TIM6 interrupts once a second so a
 *            32-bit wrap (every 19.9 s at 216 MHz) is never missed.
 *   LEDs     LD1 green PB0 (heartbeat), LD2 blue PB7 (exit code 0), LD3 red PB14 (exit != 0).
 *   vectors  the 16 core vectors come from boards/common/startup.c; the 98 STM32F746 IRQ
 *            vectors are below (unused ones report "unhandled IRQ" and stop).
 */
#include <stdint.h>

#include "board.h"
#include "board_extra.h"
#include "clock_config.h"
#include "cortex_m.h"
#include "stm32f746_regs.h"

extern uint32_t __vectors_start[];

/* Time limits while still on HSI 16 MHz: a crystal starts in a few ms, the PLL locks and the
 * over-drive regulator settles in well under 1 ms; these bounds are generous. */
#define HSE_STARTUP_CYCLES (CLK_HSI_HZ / 10u) /* 100 ms */
#define LOCK_CYCLES (CLK_HSI_HZ / 10u)        /* 100 ms for PLL lock, over-drive, switches */

static int s_ready;
/* Set once USART3 is configured: before that board_putc drops characters, so a fault during
 * start-up reaches board_exit (red LED) instead of spinning on a TXE flag that never rises. */
static volatile int s_console_ready;
static volatile int s_leds_ready;
static uint32_t s_core_hz = CLK_HSI_HZ;  /* HCLK = core clock */
static uint32_t s_pclk1_hz = CLK_HSI_HZ; /* USART3 kernel clock */
static uint32_t s_timclk_hz = CLK_HSI_HZ; /* TIM6 clock */
static const char *s_clock_note; /* set when the clock is not the nominal one */

/* ---------------------------------------------------------------- cycle counter -- */

static volatile uint32_t s_cyc_high;
static volatile uint32_t s_cyc_last;

static void dwt_start(void)
{
    CM_DEMCR |= (1u << 24); /* TRCENA */
    CM_DWT_LAR = 0xC5ACCE55u; /* the M7's DWT is locked against software writes until unlocked */
    CM_DWT_CYCCNT = 0;
    CM_DWT_CTRL |= 1u; /* CYCCNTENA */
}

/* Extend CYCCNT to 64 bits. Call with interrupts masked, at least once per 2^32 cycles. */
static uint64_t cycles_extend(void)
{
    uint32_t now = CM_DWT_CYCCNT;
    if (now < s_cyc_last) {
        s_cyc_high++;
    }
    s_cyc_last = now;
    return ((uint64_t)s_cyc_high << 32) | now;
}

static void tim6_irq(void)
{
    TIM6_SR = 0;   /* clear UIF */
    (void)TIM6_SR; /* make sure the clear has reached the timer before the handler returns */
    (void)cycles_extend();
}

uint64_t board_ticks(void)
{
    uint32_t primask = cm_get_primask();
    cm_disable_irq();
    uint64_t t = cycles_extend();
    cm_set_primask(primask);
    return t;
}

const char *board_tick_unit(void) { return "cycles"; }
uint32_t board_tick_resolution(void) { return 1; }
uint32_t board_core_clock_hz(void) { return s_core_hz; }

/* ------------------------------------------------------------------------ clock -- */

/* Wait until (reg & mask) == want; gives up after `cycles` DWT cycles or as many polls
 * (so it also ends if the cycle counter were not running). */
static int wait_bits(volatile uint32_t *reg, uint32_t mask, uint32_t want, uint32_t cycles)
{
    uint32_t start = CM_DWT_CYCCNT;
    for (uint32_t n = 0; n < cycles; n++) {
        if ((*reg & mask) == want) {
            return 1;
        }
        if ((uint32_t)(CM_DWT_CYCCNT - start) > cycles) {
            break;
        }
    }
    return (*reg & mask) == want;
}

static int hse_start(int bypass)
{
    RCC_CR &= ~RCC_CR_HSEON;
    if (!wait_bits(&RCC_CR, RCC_CR_HSERDY, 0, LOCK_CYCLES)) {
        return 0;
    }
    if (bypass) {
        RCC_CR |= RCC_CR_HSEBYP; /* HSEBYP may only change while HSE is off */
    } else {
        RCC_CR &= ~RCC_CR_HSEBYP;
    }
    RCC_CR |= RCC_CR_HSEON;
    if (wait_bits(&RCC_CR, RCC_CR_HSERDY, RCC_CR_HSERDY, HSE_STARTUP_CYCLES)) {
        return 1;
    }
    RCC_CR &= ~RCC_CR_HSEON;
    return 0;
}

/* Give up on the PLL: HSI 16 MHz, all prescalers /1 (the reset state). */
static void clock_fail(const char *note)
{
    RCC_CFGR &= ~(RCC_CFGR_SW_MASK | (0xFu << RCC_CFGR_HPRE_POS) | (7u << RCC_CFGR_PPRE1_POS) |
                  (7u << RCC_CFGR_PPRE2_POS));
    s_clock_note = note;
}

/* RM0385, PWR chapter "Entering Over-drive mode", and the RCC chapter on clock switching. */
static void clock_init(void)
{
    uint32_t m;
    int hse;

    RCC_APB1ENR |= RCC_APB1ENR_PWREN;
    (void)RCC_APB1ENR; /* read back: the enable takes effect before PWR is touched */

    /* Run from HSI while reconfiguring (the reset state, but a debugger may have left
     * something else behind). */
    RCC_CR |= RCC_CR_HSION;
    (void)wait_bits(&RCC_CR, RCC_CR_HSIRDY, RCC_CR_HSIRDY, LOCK_CYCLES);
    RCC_CFGR &= ~RCC_CFGR_SW_MASK;
    (void)wait_bits(&RCC_CFGR, RCC_CFGR_SWS_MASK, 0, LOCK_CYCLES);
    RCC_CR &= ~RCC_CR_PLLON;
    (void)wait_bits(&RCC_CR, RCC_CR_PLLRDY, 0, LOCK_CYCLES);
    RCC_CIR = 0;

    /* Voltage scale 1 (VOS may only be changed while the PLL is off). */
    PWR_CR1 = (PWR_CR1 & ~PWR_CR1_VOS_MASK) | PWR_CR1_VOS_SCALE1;

    if (hse_start(1)) {
        hse = 1;
        m = CLK_PLL_M_HSE;
    } else if (hse_start(0)) {
        hse = 1;
        m = CLK_PLL_M_HSE;
        s_clock_note = "HSE bypass did not start; running from the 8 MHz crystal";
    } else {
        hse = 0;
        m = CLK_PLL_M_HSI;
        s_clock_note = "no HSE (ST-LINK MCO missing?); PLL runs from HSI 16 MHz (+-1%)";
    }
    RCC_PLLCFGR = clk_pllcfgr(RCC_PLLCFGR, m, CLK_PLL_N, CLK_PLL_P, CLK_PLL_Q, hse);
    RCC_CR |= RCC_CR_PLLON;

    /* Over-drive: needed above 180 MHz. */
    PWR_CR1 |= PWR_CR1_ODEN;
    if (!wait_bits(&PWR_CSR1, PWR_CSR1_ODRDY, PWR_CSR1_ODRDY, LOCK_CYCLES)) {
        clock_fail("over-drive did not become ready; staying on HSI 16 MHz");
        return;
    }
    PWR_CR1 |= PWR_CR1_ODSWEN;
    if (!wait_bits(&PWR_CSR1, PWR_CSR1_ODSWRDY, PWR_CSR1_ODSWRDY, LOCK_CYCLES)) {
        clock_fail("over-drive switch did not complete; staying on HSI 16 MHz");
        return;
    }

    /* Wait states first (the higher clock must never meet too few), then the prescalers. */
    FLASH_ACR = (FLASH_ACR & ~FLASH_ACR_LATENCY_MASK) | CLK_FLASH_WS;
    if ((FLASH_ACR & FLASH_ACR_LATENCY_MASK) != CLK_FLASH_WS) {
        clock_fail("flash latency did not take; staying on HSI 16 MHz");
        return;
    }
    RCC_CFGR = (RCC_CFGR & ~((0xFu << RCC_CFGR_HPRE_POS) | (7u << RCC_CFGR_PPRE1_POS) |
                             (7u << RCC_CFGR_PPRE2_POS))) |
               clk_cfgr_prescalers();

    if (!wait_bits(&RCC_CR, RCC_CR_PLLRDY, RCC_CR_PLLRDY, LOCK_CYCLES)) {
        clock_fail("PLL did not lock; staying on HSI 16 MHz");
        return;
    }
    RCC_CFGR = (RCC_CFGR & ~RCC_CFGR_SW_MASK) | RCC_CFGR_SW_PLL;
    if (!wait_bits(&RCC_CFGR, RCC_CFGR_SWS_MASK, RCC_CFGR_SW_PLL << RCC_CFGR_SWS_POS, LOCK_CYCLES)) {
        clock_fail("switch to the PLL failed; staying on HSI 16 MHz");
        return;
    }
    s_core_hz = CLK_HCLK_HZ;
    s_pclk1_hz = CLK_PCLK1_HZ;
    s_timclk_hz = CLK_TIMCLK1_HZ;
}

/* Flash ART accelerator + prefetch (ITCM-interface fetches only), and the Cortex-M7 L1 caches
 * (4 KB I + 4 KB D on the F746), which serve code and constants fetched over AXIM. */
static void caches_init(void)
{
    FLASH_ACR &= ~FLASH_ACR_ARTEN;
    FLASH_ACR |= FLASH_ACR_ARTRST;
    FLASH_ACR &= ~FLASH_ACR_ARTRST;
    FLASH_ACR |= FLASH_ACR_ARTEN | FLASH_ACR_PRFTEN;

    if (!(CM_SCB_CCR & CM7_CCR_IC)) {
        cm_dsb();
        cm_isb();
        CM7_ICIALLU = 0; /* invalidate the whole I-cache */
        cm_dsb();
        cm_isb();
        CM_SCB_CCR |= CM7_CCR_IC;
        cm_dsb();
        cm_isb();
    }
    if (!(CM_SCB_CCR & CM7_CCR_DC)) {
        CM7_CSSELR = 0; /* level 1 data cache */
        cm_dsb();
        uint32_t ccsidr = CM7_CCSIDR;
        uint32_t sets = ((ccsidr >> 13) & 0x7FFFu) + 1u;
        uint32_t ways = ((ccsidr >> 3) & 0x3FFu) + 1u;
        uint32_t line_shift = (ccsidr & 7u) + 4u; /* log2(line bytes) */
        uint32_t way_shift = ways > 1u ? (uint32_t)__builtin_clz(ways - 1u) : 0u;
        for (uint32_t set = 0; set < sets; set++) {
            for (uint32_t way = 0; way < ways; way++) {
                CM7_DCISW = (set << line_shift) | (ways > 1u ? way << way_shift : 0u);
            }
        }
        cm_dsb();
        CM_SCB_CCR |= CM7_CCR_DC;
        cm_dsb();
        cm_isb();
    }
}

/* ------------------------------------------------------------------------- GPIO -- */

static void gpio_mode(uint32_t port, uint32_t pin, uint32_t mode)
{
    GPIO_MODER(port) = (GPIO_MODER(port) & ~(3u << (2u * pin))) | (mode << (2u * pin));
}

static void gpio_af(uint32_t port, uint32_t pin, uint32_t af)
{
    if (pin < 8u) {
        GPIO_AFRL(port) = (GPIO_AFRL(port) & ~(0xFu << (4u * pin))) | (af << (4u * pin));
    } else {
        GPIO_AFRH(port) = (GPIO_AFRH(port) & ~(0xFu << (4u * (pin - 8u)))) | (af << (4u * (pin - 8u)));
    }
    gpio_mode(port, pin, GPIO_MODE_AF);
}

#define LED_PORT GPIO_PORT_B
#define LED_GREEN 0u  /* LD1 */
#define LED_BLUE 7u   /* LD2 */
#define LED_RED 14u   /* LD3 */

static void led_set(uint32_t pin, int on) { GPIO_BSRR(LED_PORT) = on ? (1u << pin) : (1u << (pin + 16u)); }

void board_led_toggle(void) { led_set(LED_GREEN, !(GPIO_ODR(LED_PORT) & (1u << LED_GREEN))); }

/* ---------------------------------------------------------------------- console -- */

#define RX_SIZE 256u /* power of two */
static volatile uint8_t s_rx[RX_SIZE];
static volatile uint32_t s_rx_head; /* written by the IRQ */
static volatile uint32_t s_rx_tail; /* written by board_getc */
static volatile uint32_t s_rx_dropped;

static void usart3_irq(void)
{
    uint32_t isr = USART3_ISR;
    if (isr & USART_ICR_ERRORS) {
        USART3_ICR = isr & USART_ICR_ERRORS; /* an uncleared overrun would re-raise the IRQ */
    }
    if (isr & USART_ISR_RXNE) {
        uint8_t b = (uint8_t)USART3_RDR;
        uint32_t head = s_rx_head;
        if (head - s_rx_tail < RX_SIZE) {
            s_rx[head & (RX_SIZE - 1u)] = b;
            s_rx_head = head + 1u;
        } else {
            s_rx_dropped++;
        }
    }
}

static void console_init(void)
{
    RCC_AHB1ENR |= RCC_AHB1ENR_GPIODEN;
    (void)RCC_AHB1ENR;
    /* PD8 = USART3_TX, PD9 = USART3_RX, AF7; pull-up on RX so an open line idles high. */
    GPIO_OSPEEDR(GPIO_PORT_D) |= (2u << (2u * 8u)) | (2u << (2u * 9u));
    GPIO_PUPDR(GPIO_PORT_D) = (GPIO_PUPDR(GPIO_PORT_D) & ~(3u << (2u * 9u))) | (1u << (2u * 9u));
    gpio_af(GPIO_PORT_D, 8u, 7u);
    gpio_af(GPIO_PORT_D, 9u, 7u);

    RCC_APB1ENR |= RCC_APB1ENR_USART3EN;
    (void)RCC_APB1ENR;
    RCC_DCKCFGR2 &= ~RCC_DCKCFGR2_USART3SEL_MASK; /* kernel clock = PCLK1 */
    USART3_CR1 = 0;
    USART3_CR2 = 0; /* 1 stop bit */
    USART3_CR3 = 0; /* no flow control */
    USART3_BRR = (s_pclk1_hz + CLK_CONSOLE_BAUD / 2u) / CLK_CONSOLE_BAUD; /* 16x oversampling */
    USART3_ICR = USART_ICR_ERRORS;
    USART3_CR1 = USART_CR1_TE | USART_CR1_RE | USART_CR1_RXNEIE | USART_CR1_UE; /* 8N1 */
    s_console_ready = 1;
    CM_NVIC_ICPR(F746_IRQ_USART3) = CM_NVIC_BIT(F746_IRQ_USART3);
    CM_NVIC_ISER(F746_IRQ_USART3) = CM_NVIC_BIT(F746_IRQ_USART3);
}

void board_putc(char c)
{
    if (!s_console_ready) {
        return;
    }
    while (!(USART3_ISR & USART_ISR_TXE)) {
    }
    USART3_TDR = (uint8_t)c;
}

void board_write(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        board_putc(s[i]);
    }
}

void board_puts(const char *s)
{
    while (*s) {
        board_putc(*s++);
    }
}

int board_getc(int32_t timeout_ms)
{
    uint64_t deadline = 0;
    if (timeout_ms >= 0) {
        deadline = board_ticks() + (uint64_t)timeout_ms * (s_core_hz / 1000u);
    }
    for (;;) {
        uint32_t tail = s_rx_tail;
        if (s_rx_head != tail) {
            int c = s_rx[tail & (RX_SIZE - 1u)];
            s_rx_tail = tail + 1u;
            return c;
        }
        if (timeout_ms >= 0 && board_ticks() >= deadline) {
            return -1;
        }
    }
}

/* ----------------------------------------------------------------------- timers -- */

static void tim6_init(void)
{
    RCC_APB1ENR |= RCC_APB1ENR_TIM6EN;
    (void)RCC_APB1ENR;
    TIM6_CR1 = TIM_CR1_URS; /* only counter overflow raises the update interrupt */
    TIM6_PSC = s_timclk_hz / 10000u - 1u; /* 10 kHz */
    TIM6_ARR = CLK_TIM6_ARR;         /* 1 s */
    TIM6_EGR = TIM_EGR_UG;           /* load PSC */
    TIM6_SR = 0;
    TIM6_DIER = TIM_DIER_UIE;
    CM_NVIC_ICPR(F746_IRQ_TIM6_DAC) = CM_NVIC_BIT(F746_IRQ_TIM6_DAC);
    CM_NVIC_ISER(F746_IRQ_TIM6_DAC) = CM_NVIC_BIT(F746_IRQ_TIM6_DAC);
    TIM6_CR1 = TIM_CR1_URS | TIM_CR1_CEN;
}

/* ------------------------------------------------------------------------ board -- */

typedef void (*vector_t)(void);
__attribute__((used, section(".vectors.irq"))) const vector_t board_irq_vectors[F746_IRQ_COUNT] = {
    [0 ... F746_IRQ_COUNT - 1] = board_fault_entry,
    [F746_IRQ_USART3] = usart3_irq,
    [F746_IRQ_TIM6_DAC] = tim6_irq,
};

static void leds_init(void)
{
    RCC_AHB1ENR |= RCC_AHB1ENR_GPIOBEN;
    (void)RCC_AHB1ENR;
    led_set(LED_GREEN, 0);
    led_set(LED_BLUE, 0);
    led_set(LED_RED, 0);
    gpio_mode(LED_PORT, LED_GREEN, GPIO_MODE_OUTPUT);
    gpio_mode(LED_PORT, LED_BLUE, GPIO_MODE_OUTPUT);
    gpio_mode(LED_PORT, LED_RED, GPIO_MODE_OUTPUT);
    s_leds_ready = 1;
}

void board_init(void)
{
    if (s_ready) {
        return;
    }
    s_ready = 1;
    cm_disable_irq();
    CM_SCB_VTOR = (uint32_t)(uintptr_t)__vectors_start;
    dwt_start();
    clock_init();
    caches_init();

    leds_init();
    led_set(LED_GREEN, 1);

    console_init();
    tim6_init();
    cm_enable_irq();
    if (s_clock_note) {
        board_puts("warning: nucleo_f746zg clock: ");
        board_puts(s_clock_note);
        board_puts("\r\n");
    }
}

void board_exit(int code)
{
    static const char digits[] = "0123456789";
    char buf[12];
    int i = 11;
    unsigned v;

    code = board_exit_check(code);
    v = code < 0 ? (unsigned)(-code) : (unsigned)code;
    buf[i] = '\0';
    do {
        buf[--i] = digits[v % 10u];
        v /= 10u;
    } while (v);
    if (code < 0) {
        buf[--i] = '-';
    }
    board_puts("\r\n*** EXIT ");
    board_puts(&buf[i]);
    board_puts("\r\n");
    while (s_console_ready && !(USART3_ISR & USART_ISR_TC)) {
    }
    if (!s_leds_ready) {
        leds_init(); /* an exit (a fault) before board_init got that far still shows on the LEDs */
    }
    led_set(LED_GREEN, 0);
    led_set(code == 0 ? LED_BLUE : LED_RED, 1);
    cm_disable_irq();
    for (;;) {
        __asm__ volatile("wfi");
    }
}

const char *board_name(void) { return "nucleo_f746zg"; }
