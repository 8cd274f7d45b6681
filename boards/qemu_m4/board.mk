# qemu_m4: QEMU mps2-an386 (Cortex-M4), standing in for DISCO_F469NI (2 MB flash, 320 KB SRAM
# + 64 KB CCM). Included by boards/firmware.mk; BOARDS_DIR is the boards/ directory.
BOARD_CPU_FLAGS := -mcpu=cortex-m4 -mfpu=fpv4-sp-d16 -mfloat-abi=hard -mthumb
BOARD_LDSCRIPT  := $(BOARDS_DIR)/qemu_m4/qemu_m4.ld
BOARD_SRCS      := $(BOARDS_DIR)/common/startup.c $(BOARDS_DIR)/common/syscalls.c $(BOARDS_DIR)/common/mps2.c
BOARD_INCLUDES  := $(BOARDS_DIR)/common
BOARD_DEFINES   := TREC_BOARD_QEMU_M4=1 TREC_BOARD_QEMU=1
# `make run` (and trec_tflm.target.qemu) start the ELF with this machine.
QEMU_MACHINE    := mps2-an386
