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

/* RM0385, PWR chapter "Entering Over-drive mode", and the RCC chapter on clock switching; the
 * steps before and after the PLL source are stm32_clock_begin / stm32_clock_finish. */
void stm32_board_clock_init(void)
{
    uint32_t m;
    int hse;

    stm32_clock_begin();
    if (stm32_hse_start(1)) {
        hse = 1;
        m = CLK_PLL_M_HSE;
    } else if (stm32_hse_start(0)) {
        hse = 1;
        m = CLK_PLL_M_HSE;
        stm32_clock_note = "HSE bypass did not start; running from the 8 MHz crystal";
    } else {
        hse = 0;
        m = CLK_PLL_M_HSI;
        stm32_clock_note = "no HSE (ST-LINK MCO missing?); PLL runs from HSI 16 MHz (+-1%)";
    }
    RCC_PLLCFGR = clk_pllcfgr(RCC_PLLCFGR, m, CLK_PLL_N, CLK_PLL_P, CLK_PLL_Q, hse);
    stm32_clock_finish();
}

/* Flash ART accelerator + prefetch (ITCM-interface fetches only), and the Cortex-M7 L1 caches
 * (4 KB I + 4 KB D on the F746), which serve code and constants fetched over AXIM. */
void stm32_board_caches_init(void)
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

/* ------------------------------------------------------------------------- LEDs -- */

#define LED_PORT GPIO_PORT_B
#define LED_GREEN 0u /* LD1 */
#define LED_BLUE 7u  /* LD2 */
#define LED_RED 14u  /* LD3 */

static void led_set(uint32_t pin, int on) { GPIO_BSRR(LED_PORT) = on ? (1u << pin) : (1u << (pin + 16u)); }

void board_led_toggle(void) { led_set(LED_GREEN, !(GPIO_ODR(LED_PORT) & (1u << LED_GREEN))); }

void stm32_board_leds_init(void)
{
    RCC_AHB1ENR |= RCC_AHB1ENR_GPIOBEN;
    (void)RCC_AHB1ENR;
    led_set(LED_GREEN, 0);
    led_set(LED_BLUE, 0);
    led_set(LED_RED, 0);
    stm32_gpio_mode(LED_PORT, LED_GREEN, GPIO_MODE_OUTPUT);
    stm32_gpio_mode(LED_PORT, LED_BLUE, GPIO_MODE_OUTPUT);
    stm32_gpio_mode(LED_PORT, LED_RED, GPIO_MODE_OUTPUT);
}

void stm32_board_led_run(int on) { led_set(LED_GREEN, on); }

void stm32_board_led_exit(int code) { led_set(code == 0 ? LED_BLUE : LED_RED, 1); }

/* ---------------------------------------------------------------------- console -- */

void stm32_board_usart3_irq(void)
{
    uint32_t isr = USART3_ISR;
    if (isr & USART_ICR_ERRORS) {
        USART3_ICR = isr & USART_ICR_ERRORS; /* an uncleared overrun would re-raise the IRQ */
    }
    if (isr & USART_ISR_RXNE) {
        stm32_console_received((uint8_t)USART3_RDR);
    }
}

void stm32_board_console_init(void)
{
    RCC_AHB1ENR |= RCC_AHB1ENR_GPIODEN;
    (void)RCC_AHB1ENR;
    /* PD8 = USART3_TX, PD9 = USART3_RX, AF7; pull-up on RX so an open line idles high. */
    GPIO_OSPEEDR(GPIO_PORT_D) |= (2u << (2u * 8u)) | (2u << (2u * 9u));
    GPIO_PUPDR(GPIO_PORT_D) = (GPIO_PUPDR(GPIO_PORT_D) & ~(3u << (2u * 9u))) | (1u << (2u * 9u));
    stm32_gpio_af(GPIO_PORT_D, 8u, 7u);
    stm32_gpio_af(GPIO_PORT_D, 9u, 7u);

    RCC_APB1ENR |= RCC_APB1ENR_USART3EN;
    (void)RCC_APB1ENR;
    RCC_DCKCFGR2 &= ~RCC_DCKCFGR2_USART3SEL_MASK; /* kernel clock = PCLK1 */
    USART3_CR1 = 0;
    USART3_CR2 = 0; /* 1 stop bit */
    USART3_CR3 = 0; /* no flow control */
    USART3_BRR = (stm32_pclk1_hz + CLK_CONSOLE_BAUD / 2u) / CLK_CONSOLE_BAUD; /* 16x oversampling */
    USART3_ICR = USART_ICR_ERRORS;
    USART3_CR1 = USART_CR1_TE | USART_CR1_RE | USART_CR1_RXNEIE | USART_CR1_UE; /* 8N1 */
    stm32_console_ready = 1;
    CM_NVIC_ICPR(F746_IRQ_USART3) = CM_NVIC_BIT(F746_IRQ_USART3);
    CM_NVIC_ISER(F746_IRQ_USART3) = CM_NVIC_BIT(F746_IRQ_USART3);
}

const char *board_name(void) { return "nucleo_f746zg"; }
