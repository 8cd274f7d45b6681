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
 *            vectors from boards/common/stm32_common.c (unused ones report "unhandled IRQ"
 *            and stop).
 * What the STM32 boards share (ticks, the clock steps around the PLL source, the console ring,
 * board_init and board_exit) is boards/common/stm32_common.c; this file has the board's own parts.
 */
#include <stdint.h>

#include "board.h"
#include "cortex_m.h"
#include "stm32_common.h"

/* ------------------------------------------------------------------------ clock -- */

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
    ok = stm32_wait_bits(&TIM11_SR, TIM11_SR_CC1IF, TIM11_SR_CC1IF, STM32_LOCK_CYCLES);
    prev = TIM11_CCR1; /* reading CCR1 clears CC1IF */
    for (uint32_t i = 0; ok && i < CLK_MEASURE_INTERVALS; i++) {
        ok = stm32_wait_bits(&TIM11_SR, TIM11_SR_CC1IF, TIM11_SR_CC1IF, STM32_LOCK_CYCLES);
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

/* RM0386, PWR chapter "Entering Over-drive mode", and the RCC chapter on clock switching; the
 * steps before and after the PLL source are stm32_clock_begin / stm32_clock_finish. */
void stm32_board_clock_init(void)
{
    uint32_t src_hz = CLK_HSI_HZ;
    int hse;

    stm32_clock_begin();
    /* Prescalers /1 while on HSI (the reset state; the HSE measurement counts at HSI). */
    RCC_CFGR &= ~((0xFu << RCC_CFGR_HPRE_POS) | (7u << RCC_CFGR_PPRE1_POS) | (7u << RCC_CFGR_PPRE2_POS));

    if (stm32_hse_start(0)) {
        hse = 1;
    } else if (stm32_hse_start(1)) {
        hse = 1;
        stm32_clock_note = "crystal did not start; running from an external clock (bypass)";
    } else {
        hse = 0;
        stm32_clock_note = "no HSE; PLL runs from HSI 16 MHz (+-1%)";
    }
    if (hse) {
        /* 8 MHz on current boards, 25 MHz on revision A: measure rather than assume. */
        const uint32_t hz = BOARD_HSE_HZ ? BOARD_HSE_HZ : clk_classify_hse(hse_measure());
        if (hz != 0u) {
            src_hz = hz;
            if (hz == CLK_HSE_REV_A_HZ && !BOARD_HSE_HZ) {
                stm32_clock_note = "25 MHz crystal measured (a revision A board); PLL M 25, N 360 (180 MHz)";
            }
        } else {
            hse = 0;
            RCC_CR &= ~RCC_CR_HSEON;
            stm32_clock_note = "HSE measured at neither 8 nor 25 MHz; PLL runs from HSI 16 MHz (+-1%)";
        }
    }
    const struct clk_plan plan = clk_plan_for(src_hz);
    if (!plan.ok) {
        stm32_clock_fail("no PLL plan for BOARD_HSE_HZ; staying on HSI 16 MHz");
        return;
    }
    RCC_PLLCFGR = clk_pllcfgr(RCC_PLLCFGR, plan.m, plan.n, plan.p, plan.q, hse);
    stm32_clock_finish();
}

/* ART accelerator: flash instruction and data caches (reset while disabled) + prefetch. */
void stm32_board_caches_init(void)
{
    FLASH_ACR &= ~(FLASH_ACR_ICEN | FLASH_ACR_DCEN);
    FLASH_ACR |= FLASH_ACR_ICRST | FLASH_ACR_DCRST;
    FLASH_ACR &= ~(FLASH_ACR_ICRST | FLASH_ACR_DCRST);
    FLASH_ACR |= FLASH_ACR_ICEN | FLASH_ACR_DCEN | FLASH_ACR_PRFTEN;
}

/* ------------------------------------------------------------------------- LEDs -- */

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
    stm32_gpio_mode(port, pin, GPIO_MODE_OUTPUT);
}

void board_led_toggle(void)
{
    uint32_t port = GPIO_PORT_G, pin = 6u;
    led_set(port, pin, (GPIO_ODR(port) >> pin) & 1u); /* high (off) -> on, and back */
}

void stm32_board_leds_init(void)
{
    RCC_AHB1ENR |= RCC_AHB1ENR_GPIODEN | RCC_AHB1ENR_GPIOGEN | RCC_AHB1ENR_GPIOKEN;
    (void)RCC_AHB1ENR;
    led_init(LED_GREEN);
    led_init(LED_ORANGE);
    led_init(LED_RED);
    led_init(LED_BLUE);
}

void stm32_board_led_run(int on) { led_set(LED_GREEN, on); }

void stm32_board_led_exit(int code)
{
    if (code == 0) {
        led_set(LED_BLUE, 1);
    } else {
        led_set(LED_RED, 1);
    }
}

/* ---------------------------------------------------------------------- console -- */

void stm32_board_usart3_irq(void)
{
    uint32_t sr = USART3_SR;
    /* Reading SR then DR clears RXNE and the error flags (ORE, NF, FE, PE) together; an
     * overrun with RXNEIE set would otherwise re-raise the interrupt. */
    if (sr & (USART_SR_RXNE | USART_SR_ORE)) {
        stm32_console_received((uint8_t)USART3_DR);
    }
}

void stm32_board_console_init(void)
{
    RCC_AHB1ENR |= RCC_AHB1ENR_GPIOBEN;
    (void)RCC_AHB1ENR;
    /* PB10 = USART3_TX, PB11 = USART3_RX, AF7; pull-up on RX so an open line idles high. */
    GPIO_OSPEEDR(GPIO_PORT_B) |= (2u << (2u * 10u)) | (2u << (2u * 11u));
    GPIO_PUPDR(GPIO_PORT_B) = (GPIO_PUPDR(GPIO_PORT_B) & ~(3u << (2u * 11u))) | (1u << (2u * 11u));
    stm32_gpio_af(GPIO_PORT_B, 10u, 7u);
    stm32_gpio_af(GPIO_PORT_B, 11u, 7u);

    RCC_APB1ENR |= RCC_APB1ENR_USART3EN;
    (void)RCC_APB1ENR;
    USART3_CR1 = 0;
    USART3_CR2 = 0; /* 1 stop bit */
    USART3_CR3 = 0; /* no flow control */
    /* 16x oversampling: BRR = DIV_Mantissa << 4 | DIV_Fraction = f_pclk1 / baud, rounded. */
    USART3_BRR = (stm32_pclk1_hz + CLK_CONSOLE_BAUD / 2u) / CLK_CONSOLE_BAUD;
    (void)USART3_SR;
    (void)USART3_DR;
    USART3_CR1 = USART_CR1_UE;
    USART3_CR1 = USART_CR1_UE | USART_CR1_TE | USART_CR1_RE | USART_CR1_RXNEIE; /* 8N1 */
    stm32_console_ready = 1;
    CM_NVIC_ICPR(F469_IRQ_USART3) = CM_NVIC_BIT(F469_IRQ_USART3);
    CM_NVIC_ISER(F469_IRQ_USART3) = CM_NVIC_BIT(F469_IRQ_USART3);
}

const char *board_name(void) { return "disco_f469ni"; }
