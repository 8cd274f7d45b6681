/*
 * trec-tflm: the code the STM32 boards share (see stm32_common.h); the board-specific parts are
 * in boards/<board>/board.c.
 */
#include "stm32_common.h"

#include <stdint.h>

#include "board.h"
#include "board_extra.h"
#include "cortex_m.h"

extern uint32_t __vectors_start[];

uint32_t stm32_core_hz = CLK_HSI_HZ;
uint32_t stm32_pclk1_hz = CLK_HSI_HZ;
uint32_t stm32_timclk_hz = CLK_HSI_HZ;
const char *stm32_clock_note;
volatile int stm32_console_ready;

static int s_ready;
static volatile int s_leds_ready;

/* ---------------------------------------------------------------- cycle counter -- */

static volatile uint32_t s_cyc_high;
static volatile uint32_t s_cyc_last;

static void dwt_start(void)
{
    CM_DEMCR |= (1u << 24); /* TRCENA */
#if STM32_DWT_UNLOCK
    CM_DWT_LAR = 0xC5ACCE55u; /* the M7's DWT is locked against software writes until unlocked */
#endif
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
uint32_t board_core_clock_hz(void) { return stm32_core_hz; }

/* ------------------------------------------------------------------------ clock -- */

int stm32_wait_bits(volatile uint32_t *reg, uint32_t mask, uint32_t want, uint32_t cycles)
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

int stm32_hse_start(int bypass)
{
    RCC_CR &= ~RCC_CR_HSEON;
    if (!stm32_wait_bits(&RCC_CR, RCC_CR_HSERDY, 0, STM32_LOCK_CYCLES)) {
        return 0;
    }
    if (bypass) {
        RCC_CR |= RCC_CR_HSEBYP; /* HSEBYP may only change while HSE is off */
    } else {
        RCC_CR &= ~RCC_CR_HSEBYP;
    }
    RCC_CR |= RCC_CR_HSEON;
    if (stm32_wait_bits(&RCC_CR, RCC_CR_HSERDY, RCC_CR_HSERDY, STM32_HSE_STARTUP_CYCLES)) {
        return 1;
    }
    RCC_CR &= ~RCC_CR_HSEON;
    return 0;
}

/* Give up on the PLL: HSI 16 MHz, all prescalers /1 (the reset state). */
void stm32_clock_fail(const char *note)
{
    RCC_CFGR &=
        ~(RCC_CFGR_SW_MASK | (0xFu << RCC_CFGR_HPRE_POS) | (7u << RCC_CFGR_PPRE1_POS) | (7u << RCC_CFGR_PPRE2_POS));
    stm32_clock_note = note;
}

/* RM0385 / RM0386, PWR chapter "Entering Over-drive mode", and the RCC chapter on clock
 * switching. */
void stm32_clock_begin(void)
{
    RCC_APB1ENR |= RCC_APB1ENR_PWREN;
    (void)RCC_APB1ENR; /* read back: the enable takes effect before PWR is touched */

    RCC_CR |= RCC_CR_HSION;
    (void)stm32_wait_bits(&RCC_CR, RCC_CR_HSIRDY, RCC_CR_HSIRDY, STM32_LOCK_CYCLES);
    RCC_CFGR &= ~RCC_CFGR_SW_MASK;
    (void)stm32_wait_bits(&RCC_CFGR, RCC_CFGR_SWS_MASK, 0, STM32_LOCK_CYCLES);
    RCC_CR &= ~RCC_CR_PLLON;
    (void)stm32_wait_bits(&RCC_CR, RCC_CR_PLLRDY, 0, STM32_LOCK_CYCLES);
    RCC_CIR = 0;

    /* Voltage scale 1 (VOS may only be changed while the PLL is off). */
    STM32_PWR_CR = (STM32_PWR_CR & ~STM32_PWR_CR_VOS_MASK) | STM32_PWR_CR_VOS_SCALE1;
}

void stm32_clock_finish(void)
{
    RCC_CR |= RCC_CR_PLLON;

    /* Over-drive: needed above 168 MHz (F469) / 180 MHz (F746). */
    STM32_PWR_CR |= STM32_PWR_CR_ODEN;
    if (!stm32_wait_bits(&STM32_PWR_CSR, STM32_PWR_CSR_ODRDY, STM32_PWR_CSR_ODRDY, STM32_LOCK_CYCLES)) {
        stm32_clock_fail("over-drive did not become ready; staying on HSI 16 MHz");
        return;
    }
    STM32_PWR_CR |= STM32_PWR_CR_ODSWEN;
    if (!stm32_wait_bits(&STM32_PWR_CSR, STM32_PWR_CSR_ODSWRDY, STM32_PWR_CSR_ODSWRDY, STM32_LOCK_CYCLES)) {
        stm32_clock_fail("over-drive switch did not complete; staying on HSI 16 MHz");
        return;
    }

    /* Wait states first (the higher clock must never meet too few), then the prescalers. */
    FLASH_ACR = (FLASH_ACR & ~FLASH_ACR_LATENCY_MASK) | CLK_FLASH_WS;
    if ((FLASH_ACR & FLASH_ACR_LATENCY_MASK) != CLK_FLASH_WS) {
        stm32_clock_fail("flash latency did not take; staying on HSI 16 MHz");
        return;
    }
    RCC_CFGR = (RCC_CFGR & ~((0xFu << RCC_CFGR_HPRE_POS) | (7u << RCC_CFGR_PPRE1_POS) | (7u << RCC_CFGR_PPRE2_POS))) |
               clk_cfgr_prescalers();

    if (!stm32_wait_bits(&RCC_CR, RCC_CR_PLLRDY, RCC_CR_PLLRDY, STM32_LOCK_CYCLES)) {
        stm32_clock_fail("PLL did not lock; staying on HSI 16 MHz");
        return;
    }
    RCC_CFGR = (RCC_CFGR & ~RCC_CFGR_SW_MASK) | RCC_CFGR_SW_PLL;
    if (!stm32_wait_bits(&RCC_CFGR, RCC_CFGR_SWS_MASK, RCC_CFGR_SW_PLL << RCC_CFGR_SWS_POS, STM32_LOCK_CYCLES)) {
        stm32_clock_fail("switch to the PLL failed; staying on HSI 16 MHz");
        return;
    }
    stm32_core_hz = CLK_HCLK_HZ;
    stm32_pclk1_hz = CLK_PCLK1_HZ;
    stm32_timclk_hz = CLK_TIMCLK1_HZ;
}

/* ------------------------------------------------------------------------- GPIO -- */

void stm32_gpio_mode(uint32_t port, uint32_t pin, uint32_t mode)
{
    GPIO_MODER(port) = (GPIO_MODER(port) & ~(3u << (2u * pin))) | (mode << (2u * pin));
}

void stm32_gpio_af(uint32_t port, uint32_t pin, uint32_t af)
{
    if (pin < 8u) {
        GPIO_AFRL(port) = (GPIO_AFRL(port) & ~(0xFu << (4u * pin))) | (af << (4u * pin));
    } else {
        GPIO_AFRH(port) = (GPIO_AFRH(port) & ~(0xFu << (4u * (pin - 8u)))) | (af << (4u * (pin - 8u)));
    }
    stm32_gpio_mode(port, pin, GPIO_MODE_AF);
}

/* ---------------------------------------------------------------------- console -- */

#define RX_SIZE 256u /* power of two */
static volatile uint8_t s_rx[RX_SIZE];
static volatile uint32_t s_rx_head; /* written by the IRQ */
static volatile uint32_t s_rx_tail; /* written by board_getc */
static volatile uint32_t s_rx_dropped;

void stm32_console_received(uint8_t byte)
{
    uint32_t head = s_rx_head;
    if (head - s_rx_tail < RX_SIZE) {
        s_rx[head & (RX_SIZE - 1u)] = byte;
        s_rx_head = head + 1u;
    } else {
        s_rx_dropped++;
    }
}

void board_putc(char c)
{
    if (!stm32_console_ready) {
        return;
    }
    while (!STM32_USART3_TX_EMPTY()) {
    }
    STM32_USART3_WRITE((uint8_t)c);
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
        deadline = board_ticks() + (uint64_t)timeout_ms * (stm32_core_hz / 1000u);
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
    TIM6_CR1 = TIM_CR1_URS;                   /* only counter overflow raises the update interrupt */
    TIM6_PSC = stm32_timclk_hz / 10000u - 1u; /* 10 kHz */
    TIM6_ARR = CLK_TIM6_ARR;                  /* 1 s */
    TIM6_EGR = TIM_EGR_UG;                    /* load PSC */
    TIM6_SR = 0;
    TIM6_DIER = TIM_DIER_UIE;
    CM_NVIC_ICPR(STM32_IRQ_TIM6_DAC) = CM_NVIC_BIT(STM32_IRQ_TIM6_DAC);
    CM_NVIC_ISER(STM32_IRQ_TIM6_DAC) = CM_NVIC_BIT(STM32_IRQ_TIM6_DAC);
    TIM6_CR1 = TIM_CR1_URS | TIM_CR1_CEN;
}

/* ------------------------------------------------------------------------ board -- */

/* USART3's vector (the handler is the board's: the USART registers differ between families) */
static void usart3_irq(void) { stm32_board_usart3_irq(); }

/* The device's IRQ vectors (the 16 core vectors come from boards/common/startup.c): unused ones
 * report "unhandled IRQ" and stop. */
typedef void (*vector_t)(void);
__attribute__((used, section(".vectors.irq"))) const vector_t board_irq_vectors[STM32_IRQ_COUNT] = {
    [0 ... STM32_IRQ_COUNT - 1] = board_fault_entry,
    [STM32_IRQ_USART3] = usart3_irq,
    [STM32_IRQ_TIM6_DAC] = tim6_irq,
};

static void leds_init(void)
{
    stm32_board_leds_init();
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
    stm32_board_clock_init();
    stm32_board_caches_init();

    leds_init();
    stm32_board_led_run(1);

    stm32_board_console_init();
    tim6_init();
    cm_enable_irq();
    if (stm32_clock_note) {
        board_puts("warning: ");
        board_puts(board_name());
        board_puts(" clock: ");
        board_puts(stm32_clock_note);
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
    while (stm32_console_ready && !STM32_USART3_TX_DONE()) {
    }
    if (!s_leds_ready) {
        leds_init(); /* an exit (a fault) before board_init got that far still shows on the LEDs */
    }
    stm32_board_led_run(0);
    stm32_board_led_exit(code);
    cm_disable_irq();
    for (;;) {
        __asm__ volatile("wfi");
    }
}
