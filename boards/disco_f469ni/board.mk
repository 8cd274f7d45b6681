# disco_f469ni: ST 32F469IDISCOVERY (STM32F469NIH6, Cortex-M4F 180 MHz, 2 MB flash, 320 KB SRAM
# + 64 KB CCM). Included by boards/firmware.mk; BOARDS_DIR is the boards/ directory. Flash the
# .bin/.elf with st-flash, openocd, pyocd or by copying the .bin to the DIS_F469NI USB drive
# (docs/BOARDS.md, STM32 section).
BOARD_CPU_FLAGS := -mcpu=cortex-m4 -mfpu=fpv4-sp-d16 -mfloat-abi=hard -mthumb
BOARD_LDSCRIPT  := $(BOARDS_DIR)/disco_f469ni/disco_f469ni.ld
BOARD_SRCS      := $(BOARDS_DIR)/common/startup.c $(BOARDS_DIR)/common/syscalls.c \
                   $(BOARDS_DIR)/common/stm32_common.c $(BOARDS_DIR)/disco_f469ni/board.c
BOARD_INCLUDES  := $(BOARDS_DIR)/common $(BOARDS_DIR)/disco_f469ni
BOARD_DEFINES   := TREC_BOARD_DISCO_F469NI=1 TREC_BOARD_STM32=1
# The HSE crystal is measured at boot (8 MHz, or 25 MHz on revision A boards);
# `make BOARD_HSE_HZ=25000000` fixes it instead.
ifneq ($(strip $(BOARD_HSE_HZ)),)
BOARD_DEFINES   += BOARD_HSE_HZ=$(BOARD_HSE_HZ)u
endif
# Not a QEMU board; for flashing tools and tests:
BOARD_FLASH_BASE := 0x08000000
BOARD_FLASH_SIZE := 2097152
BOARD_RAM_BASE   := 0x20000000
BOARD_RAM_SIZE   := 327680
BOARD_OPENOCD_CFG := board/stm32f469discovery.cfg
BOARD_PYOCD_TARGET := stm32f469nihx
