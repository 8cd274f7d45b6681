/*
 * board.h for DISCO_F469NI (32F469IDISCOVERY: STM32F469NIH6, Cortex-M4 with FPv4-SP FPU).
 * Written for trec-tflm from RM0386 and UM1932 (32F469IDISCOVERY user manual); no ST code.
 *
 *   clock    HSE 8 MHz crystal (X2) -> PLL 180 MHz, scale 1 + over-drive, 5 flash wait
 *            states, ART accelerator (flash instruction + data caches) and prefetch on
 *            (clock_config.h). Falls back to HSE bypass (8 MHz ST-LINK MCO, if the solder
 *            bridges route it) and then to HSI 16 MHz through the same PLL (180 MHz either
 *            way); if the PLL cannot be started the board stays on HSI 16 MHz and says so.
 *            The HSE frequency is measured against HSI (TIM11 capturing HSE_RTC): revision A
 *            boards carry a 25 MHz crystal, and the PLL plan follows the measurement
 *            (make ... BOARD_HSE_HZ=25000000 selects it instead).
 *   console  USART3 PB10 (TX) / PB11 (RX), AF7 = the ST-LINK virtual COM port; 115200 8N1;
 *            received bytes go through an interrupt-driven 256-byte ring buffer.
 *   ticks    DWT->CYCCNT core cycles, extended to 64 bits; TIM6 interrupts once a second so a
 *            32-bit wrap (every 23.9 s at 180 MHz) is never missed.
 *   LEDs     active low: LD1 green PG6 (heartbeat), LD2 orange PD4, LD3 red PD5 (exit != 0),
 *            LD4 blue PK3 (exit code 0).
 *   vectors  the 16 core vectors come from boards/common/startup.c; the 93 STM32F469 IRQ
 *            vectors are below (unused ones report "unhandled IRQ" and stop).
 */
#include <stdint.h>

#include "board.h"
#include "board_extra.h"
#include "clock_config.h"
#include "cortex_m.h"
#include "stm32f469_regs.h"

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
    CM_DEMCR |= (1u << 24); /* TRCENA (the M4's DWT needs no lock-access unlock, unlike the M7's) */
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

/* The HSE frequency measured against HSI (clock_config.h), or 0 when HSE_RTC shows no edges.
 * Runs on HSI with every prescaler /1, so TIM11 counts at exactly the HSI frequency. */
static uint32_t hse_measure(void)
{
    uint32_t ticks = 0, prev, cur;
    int ok;

    RCC_CFGR = (RCC_CFGR & ~(0x1Fu << RCC_CFGR_RTCPRE_POS)) | (CLK_MEASURE_RTCPRE << RCC_CFGR_RTCPRE_POS);
    RCC_APB2ENR |= RCC_APB2ENR_TIM11EN;
    (void)RCC_APB2ENR;
    TIM11_CR1 = 0;
    TIM11_PSC = 0;
    TIM11_ARR = 0xFFFFu;
    TIM11_OR = TIM11_OR_TI1_HSE_RTC;
    TIM11_CCMR1 = TIM11_CCMR1_IC1_TI1_DIV8;
    TIM11_CCER = TIM11_CCER_CC1E;
    TIM11_EGR = 1u; /* UG: load PSC */
    TIM11_SR = 0;
    TIM11_CR1 = 1u; /* CEN */
    ok = wait_bits(&TIM11_SR, TIM11_SR_CC1IF, TIM11_SR_CC1IF, LOCK_CYCLES);
    prev = TIM11_CCR1; /* reading CCR1 clears CC1IF */
    for (uint32_t i = 0; ok && i < CLK_MEASURE_INTERVALS; i++) {
        ok = wait_bits(&TIM11_SR, TIM11_SR_CC1IF, TIM11_SR_CC1IF, LOCK_CYCLES);
        cur = TIM11_CCR1;
        ticks += (cur - prev) & 0xFFFFu;
        prev = cur;
    }
    TIM11_CR1 = 0;
    TIM11_CCER = 0;
    TIM11_OR = 0;
    RCC_APB2ENR &= ~RCC_APB2ENR_TIM11EN;
    return ok ? clk_hse_from_capture(ticks, CLK_MEASURE_INTERVALS, CLK_HSI_HZ) : 0u;
}

/* Give up on the PLL: HSI 16 MHz, all prescalers /1 (the reset state). */
static void clock_fail(const char *note)
{
    RCC_CFGR &= ~(RCC_CFGR_SW_MASK | (0xFu << RCC_CFGR_HPRE_POS) | (7u << RCC_CFGR_PPRE1_POS) |
                  (7u << RCC_CFGR_PPRE2_POS));
    s_clock_note = note;
}

/* RM0386, PWR chapter "Entering Over-drive mode", and the RCC chapter on clock switching. */
static void clock_init(void)
{
    uint32_t src_hz = CLK_HSI_HZ;
    int hse;

    RCC_APB1ENR |= RCC_APB1ENR_PWREN;
    (void)RCC_APB1ENR; /* read back: the enable takes effect before PWR is touched */

    /* Run from HSI while reconfiguring (the reset state, but a debugger may have left
     * something else behind). */
    RCC_CR |= RCC_CR_HSION;
    (void)wait_bits(&RCC_CR, RCC_CR_HSIRDY, RCC_CR_HSIRDY, LOCK_CYCLES);
    RCC_CFGR &= ~RCC_CFGR_SW_MASK;
    (void)wait_bits(&RCC_CFGR, RCC_CFGR_SWS_MASK, 0, LOCK_CYCLES);
    /* Prescalers /1 while on HSI (the reset state; the HSE measurement counts at HSI). */
    RCC_CFGR &= ~((0xFu << RCC_CFGR_HPRE_POS) | (7u << RCC_CFGR_PPRE1_POS) | (7u << RCC_CFGR_PPRE2_POS));
    RCC_CR &= ~RCC_CR_PLLON;
    (void)wait_bits(&RCC_CR, RCC_CR_PLLRDY, 0, LOCK_CYCLES);
    RCC_CIR = 0;

    /* Voltage scale 1 (VOS may only be changed while the PLL is off). */
    PWR_CR = (PWR_CR & ~PWR_CR_VOS_MASK) | PWR_CR_VOS_SCALE1;

    if (hse_start(0)) {
        hse = 1;
    } else if (hse_start(1)) {
        hse = 1;
        s_clock_note = "crystal did not start; running from an external clock (bypass)";
    } else {
        hse = 0;
        s_clock_note = "no HSE; PLL runs from HSI 16 MHz (+-1%)";
    }
    if (hse) {
        /* 8 MHz on current boards, 25 MHz on revision A: measure rather than assume. */
        const uint32_t hz = BOARD_HSE_HZ ? BOARD_HSE_HZ : clk_classify_hse(hse_measure());
        if (hz != 0u) {
            src_hz = hz;
            if (hz == CLK_HSE_REV_A_HZ && !BOARD_HSE_HZ) {
                s_clock_note = "25 MHz crystal measured (a revision A board); PLL M 25, N 360 (180 MHz)";
            }
        } else {
            hse = 0;
            RCC_CR &= ~RCC_CR_HSEON;
            s_clock_note = "HSE measured at neither 8 nor 25 MHz; PLL runs from HSI 16 MHz (+-1%)";
        }
    }
    const struct clk_plan plan = clk_plan_for(src_hz);
    if (!plan.ok) {
        clock_fail("no PLL plan for BOARD_HSE_HZ; staying on HSI 16 MHz");
        return;
    }
    RCC_PLLCFGR = clk_pllcfgr(RCC_PLLCFGR, plan.m, plan.n, plan.p, plan.q, hse);
    RCC_CR |= RCC_CR_PLLON;

    /* Over-drive: needed above 168 MHz. */
    PWR_CR |= PWR_CR_ODEN;
    if (!wait_bits(&PWR_CSR, PWR_CSR_ODRDY, PWR_CSR_ODRDY, LOCK_CYCLES)) {
        clock_fail("over-drive did not become ready; staying on HSI 16 MHz");
        return;
    }
    PWR_CR |= PWR_CR_ODSWEN;
    if (!wait_bits(&PWR_CSR, PWR_CSR_ODSWRDY, PWR_CSR_ODSWRDY, LOCK_CYCLES)) {
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

/* ART accelerator: flash instruction and data caches (reset while disabled) + prefetch. */
static void caches_init(void)
{
    FLASH_ACR &= ~(FLASH_ACR_ICEN | FLASH_ACR_DCEN);
    FLASH_ACR |= FLASH_ACR_ICRST | FLASH_ACR_DCRST;
    FLASH_ACR &= ~(FLASH_ACR_ICRST | FLASH_ACR_DCRST);
    FLASH_ACR |= FLASH_ACR_ICEN | FLASH_ACR_DCEN | FLASH_ACR_PRFTEN;
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

/* LEDs: (port, pin), lit when the pin is low (UM1932). */
#define LED_GREEN GPIO_PORT_G, 6u  /* LD1 */
#define LED_ORANGE GPIO_PORT_D, 4u /* LD2 */
#define LED_RED GPIO_PORT_D, 5u    /* LD3 */
#define LED_BLUE GPIO_PORT_K, 3u   /* LD4 */

static void led_set(uint32_t port, uint32_t pin, int on)
{
    GPIO_BSRR(port) = on ? (1u << (pin + 16u)) : (1u << pin);
}

static void led_init(uint32_t port, uint32_t pin)
{
    led_set(port, pin, 0);
    gpio_mode(port, pin, GPIO_MODE_OUTPUT);
}

void board_led_toggle(void)
{
    uint32_t port = GPIO_PORT_G, pin = 6u;
    led_set(port, pin, (GPIO_ODR(port) >> pin) & 1u); /* high (off) -> on, and back */
}

/* ---------------------------------------------------------------------- console -- */

#define RX_SIZE 256u /* power of two */
static volatile uint8_t s_rx[RX_SIZE];
static volatile uint32_t s_rx_head; /* written by the IRQ */
static volatile uint32_t s_rx_tail; /* written by board_getc */
static volatile uint32_t s_rx_dropped;

static void usart3_irq(void)
{
    uint32_t sr = USART3_SR;
    /* Reading SR then DR clears RXNE and the error flags (ORE, NF, FE, PE) together; an
     * overrun with RXNEIE set would otherwise re-raise the interrupt. */
    if (sr & (USART_SR_RXNE | USART_SR_ORE)) {
        uint8_t b = (uint8_t)USART3_DR;
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
    RCC_AHB1ENR |= RCC_AHB1ENR_GPIOBEN;
    (void)RCC_AHB1ENR;
    /* PB10 = USART3_TX, PB11 = USART3_RX, AF7; pull-up on RX so an open line idles high. */
    GPIO_OSPEEDR(GPIO_PORT_B) |= (2u << (2u * 10u)) | (2u << (2u * 11u));
    GPIO_PUPDR(GPIO_PORT_B) = (GPIO_PUPDR(GPIO_PORT_B) & ~(3u << (2u * 11u))) | (1u << (2u * 11u));
    gpio_af(GPIO_PORT_B, 10u, 7u);
    gpio_af(GPIO_PORT_B, 11u, 7u);

    RCC_APB1ENR |= RCC_APB1ENR_USART3EN;
    (void)RCC_APB1ENR;
    USART3_CR1 = 0;
    USART3_CR2 = 0; /* 1 stop bit */
    USART3_CR3 = 0; /* no flow control */
    /* 16x oversampling: BRR = DIV_Mantissa << 4 | DIV_Fraction = f_pclk1 / baud, rounded. */
    USART3_BRR = (s_pclk1_hz + CLK_CONSOLE_BAUD / 2u) / CLK_CONSOLE_BAUD;
    (void)USART3_SR;
    (void)USART3_DR;
    USART3_CR1 = USART_CR1_UE;
    USART3_CR1 = USART_CR1_UE | USART_CR1_TE | USART_CR1_RE | USART_CR1_RXNEIE; /* 8N1 */
    s_console_ready = 1;
    CM_NVIC_ICPR(F469_IRQ_USART3) = CM_NVIC_BIT(F469_IRQ_USART3);
    CM_NVIC_ISER(F469_IRQ_USART3) = CM_NVIC_BIT(F469_IRQ_USART3);
}

void board_putc(char c)
{
    if (!s_console_ready) {
        return;
    }
    while (!(USART3_SR & USART_SR_TXE)) {
    }
    USART3_DR = (uint8_t)c;
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
    CM_NVIC_ICPR(F469_IRQ_TIM6_DAC) = CM_NVIC_BIT(F469_IRQ_TIM6_DAC);
    CM_NVIC_ISER(F469_IRQ_TIM6_DAC) = CM_NVIC_BIT(F469_IRQ_TIM6_DAC);
    TIM6_CR1 = TIM_CR1_URS | TIM_CR1_CEN;
}

/* ------------------------------------------------------------------------ board -- */

typedef void (*vector_t)(void);
__attribute__((used, section(".vectors.irq"))) const vector_t board_irq_vectors[F469_IRQ_COUNT] = {
    [0 ... F469_IRQ_COUNT - 1] = board_fault_entry,
    [F469_IRQ_USART3] = usart3_irq,
    [F469_IRQ_TIM6_DAC] = tim6_irq,
};

static void leds_init(void)
{
    RCC_AHB1ENR |= RCC_AHB1ENR_GPIODEN | RCC_AHB1ENR_GPIOGEN | RCC_AHB1ENR_GPIOKEN;
    (void)RCC_AHB1ENR;
    led_init(LED_GREEN);
    led_init(LED_ORANGE);
    led_init(LED_RED);
    led_init(LED_BLUE);
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
        board_puts("warning: disco_f469ni clock: ");
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
    while (s_console_ready && !(USART3_SR & USART_SR_TC)) {
    }
    if (!s_leds_ready) {
        leds_init(); /* an exit (a fault) before board_init got that far still shows on the LEDs */
    }
    led_set(LED_GREEN, 0);
    if (code == 0) {
        led_set(LED_BLUE, 1);
    } else {
        led_set(LED_RED, 1);
    }
    cm_disable_irq();
    for (;;) {
        __asm__ volatile("wfi");
    }
}

const char *board_name(void) { return "disco_f469ni"; }
