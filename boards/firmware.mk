# trec-tflm firmware build: one ELF for one board from a list of C / C++ / assembly sources.
#
# Use directly:
#   make -f boards/firmware.mk BOARD=qemu_m7 APP=hello APP_SRCS=tests/firmware/hello/main.c
#   make -f boards/firmware.mk BOARD=qemu_m7 APP=hello APP_SRCS=... run      # run it in QEMU
# or include it from an app Makefile after setting the variables below.
#
# Variables (all optional except APP_SRCS):
#   BOARD          board directory under boards/ with a board.mk (qemu_m7, qemu_m4, ...)
#   APP            name of the ELF (default: app)
#   APP_SRCS       sources: .c (C11), .cc/.cpp (C++17), .S/.s; paths relative to the make
#                  working directory or absolute; may live anywhere (objects are keyed by path)
#   INCLUDE_DIRS   extra include directories (without -I)
#   DEFINES        extra preprocessor macros (without -D), e.g. "N=3 USE_DSP"
#   OPT            optimisation flags (default -O3), e.g. OPT=-Ofast or OPT="-Os -g3"
#   EXTRA_CFLAGS / EXTRA_CXXFLAGS / EXTRA_ASFLAGS / EXTRA_LDFLAGS / LIBS   appended as given
#   STACK_SIZE     main stack bytes (default 16384); HEAP_MIN_SIZE: heap the link must leave free (0)
#   PRINTF_FLOAT   1 (default) links newlib-nano's printf with %f/%g support; 0 saves ~10 KB
#   BUILD_DIR      output directory (default build/$(BOARD)/$(APP)); use one per configuration
#                  for parallel builds. Outputs: $(APP).elf, $(APP).bin, $(APP).map, $(APP).lst
#   CROSS_COMPILE  toolchain prefix (default arm-none-eabi-)
#   V=1            echo the full commands
#
# A board's board.mk sets BOARD_CPU_FLAGS, BOARD_LDSCRIPT, BOARD_SRCS, BOARD_INCLUDES,
# BOARD_DEFINES and (QEMU boards) QEMU_MACHINE; everything board-specific lives there.
# Changing flags or defines rebuilds everything (the flag set is remembered in BUILD_DIR).

BOARDS_DIR := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
TREC_ROOT  := $(patsubst %/,%,$(dir $(BOARDS_DIR)))

BOARD ?= qemu_m7
AVAILABLE_BOARDS := $(patsubst $(BOARDS_DIR)/%/board.mk,%,$(wildcard $(BOARDS_DIR)/*/board.mk))
ifeq ($(wildcard $(BOARDS_DIR)/$(BOARD)/board.mk),)
$(error BOARD=$(BOARD) has no $(BOARDS_DIR)/$(BOARD)/board.mk; boards: $(AVAILABLE_BOARDS))
endif
include $(BOARDS_DIR)/$(BOARD)/board.mk

APP           ?= app
APP_SRCS      ?=
INCLUDE_DIRS  ?=
DEFINES       ?=
OPT           ?= -O3
STACK_SIZE    ?= 16384
HEAP_MIN_SIZE ?= 0
PRINTF_FLOAT  ?= 1
BUILD_DIR     ?= build/$(BOARD)/$(APP)
CROSS_COMPILE ?= arm-none-eabi-

ifeq ($(strip $(APP_SRCS)),)
$(error APP_SRCS is empty: give the application's sources, e.g. APP_SRCS=main.c)
endif

FW_CC      := $(CROSS_COMPILE)gcc
FW_CXX     := $(CROSS_COMPILE)g++
FW_SIZE    := $(CROSS_COMPILE)size
FW_OBJCOPY := $(CROSS_COMPILE)objcopy
FW_OBJDUMP := $(CROSS_COMPILE)objdump

ifeq ($(V),1)
Q :=
else
Q := @
endif

ELF := $(BUILD_DIR)/$(APP).elf
BIN := $(BUILD_DIR)/$(APP).bin
MAP := $(BUILD_DIR)/$(APP).map
LST := $(BUILD_DIR)/$(APP).lst

ALL_SRCS := $(BOARD_SRCS) $(APP_SRCS)
# Object for /abs/path/x.c is $(BUILD_DIR)/obj/abs/path/x.c.o: no clashes between same-named files.
obj_of = $(BUILD_DIR)/obj$(abspath $(1)).o
OBJS := $(foreach s,$(ALL_SRCS),$(call obj_of,$(s)))

CPPFLAGS_ALL := $(addprefix -I,$(BOARD_INCLUDES) $(INCLUDE_DIRS)) $(addprefix -D,$(BOARD_DEFINES) $(DEFINES))
COMMON_FLAGS := $(BOARD_CPU_FLAGS) --specs=nano.specs $(OPT) -g -ffunction-sections -fdata-sections \
                -Wall -MMD -MP
CFLAGS_ALL   := $(COMMON_FLAGS) -std=gnu11 $(EXTRA_CFLAGS)
CXXFLAGS_ALL := $(COMMON_FLAGS) -std=c++17 -fno-exceptions -fno-rtti -fno-threadsafe-statics $(EXTRA_CXXFLAGS)
ASFLAGS_ALL  := $(BOARD_CPU_FLAGS) -g -x assembler-with-cpp $(EXTRA_ASFLAGS)
LDFLAGS_ALL  := $(BOARD_CPU_FLAGS) --specs=nano.specs -nostartfiles \
                -T$(BOARD_LDSCRIPT) -L$(BOARDS_DIR)/common \
                -Wl,--gc-sections -Wl,-Map=$(MAP) -Wl,--print-memory-usage -Wl,--no-warn-rwx-segments \
                -Wl,--defsym=__stack_size=$(STACK_SIZE) -Wl,--defsym=__heap_min_size=$(HEAP_MIN_SIZE) \
                $(if $(filter 1,$(PRINTF_FLOAT)),-u _printf_float) $(EXTRA_LDFLAGS)
LDLIBS_ALL   := $(LIBS) -lm

# Remember the flag set: objects depend on the stamp, which changes only when flags do.
FLAGS_STAMP := $(BUILD_DIR)/flags.stamp
FLAGS_NOW   := $(BOARD)|$(CPPFLAGS_ALL)|$(CFLAGS_ALL)|$(CXXFLAGS_ALL)|$(ASFLAGS_ALL)|$(LDFLAGS_ALL)|$(LDLIBS_ALL)|$(FW_CC)
$(shell mkdir -p $(BUILD_DIR))
ifneq ($(file <$(FLAGS_STAMP)),$(FLAGS_NOW))
$(file >$(FLAGS_STAMP),$(FLAGS_NOW))
endif

.PHONY: all size run clean print-elf print-qemu-machine
.DEFAULT_GOAL := all

all: $(ELF) $(BIN) size

$(ELF): $(OBJS) $(BOARD_LDSCRIPT) $(BOARDS_DIR)/common/sections.ld $(FLAGS_STAMP)
	@echo "  LD      $@"
	$(Q)$(FW_CXX) $(LDFLAGS_ALL) -o $@ $(OBJS) $(LDLIBS_ALL)

$(BIN): $(ELF)
	$(Q)$(FW_OBJCOPY) -O binary $< $@

$(LST): $(ELF)
	$(Q)$(FW_OBJDUMP) -d -S $< > $@

size: $(ELF)
	$(Q)$(FW_SIZE) $<

# Rules per source: the source path is recovered from the object path.
define compile_rule
$(call obj_of,$(1)): $(1) $(FLAGS_STAMP)
	@mkdir -p $$(@D)
	@echo "  $(2)  $(1)"
	$(Q)$(3) -c $$< -o $$@
endef
$(foreach s,$(filter %.c,$(ALL_SRCS)),$(eval $(call compile_rule,$(s),CC     ,$(FW_CC) $(CPPFLAGS_ALL) $(CFLAGS_ALL))))
$(foreach s,$(filter %.cc %.cpp %.cxx,$(ALL_SRCS)),$(eval $(call compile_rule,$(s),CXX    ,$(FW_CXX) $(CPPFLAGS_ALL) $(CXXFLAGS_ALL))))
$(foreach s,$(filter %.S %.s,$(ALL_SRCS)),$(eval $(call compile_rule,$(s),AS     ,$(FW_CC) $(CPPFLAGS_ALL) $(ASFLAGS_ALL))))

UNKNOWN_SRCS := $(filter-out %.c %.cc %.cpp %.cxx %.S %.s,$(ALL_SRCS))
ifneq ($(UNKNOWN_SRCS),)
$(error sources of unknown type: $(UNKNOWN_SRCS))
endif

-include $(OBJS:.o=.d)

# Run the ELF in QEMU with deterministic instruction counting; console on this terminal.
QEMU ?= qemu-system-arm
run: $(ELF)
ifeq ($(QEMU_MACHINE),)
	$(error BOARD=$(BOARD) is not a QEMU board)
endif
	$(QEMU) -M $(QEMU_MACHINE) -nodefaults -display none -monitor none -serial stdio -serial null \
	  -semihosting-config enable=on,target=native -icount shift=0,align=off,sleep=off -kernel $(ELF)

print-elf:
	@echo $(abspath $(ELF))

print-qemu-machine:
	@echo $(QEMU_MACHINE)

clean:
	rm -rf $(BUILD_DIR)
