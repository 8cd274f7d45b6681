# trec-tflm: TensorFlow Lite Micro builds with our own rules, from a TFLM tree the user points at.
#
#   make -f tflm_ops/tflm.mk host-ops TFLM_ROOT=...   libtrec_tflm_ops.so for the tflite-micro Python wheel
#   make -f tflm_ops/tflm.mk host     TFLM_ROOT=...   libtflm_core.a + libtflm_kernels.a (g++, reference kernels)
#   make -f tflm_ops/tflm.mk host-core TFLM_ROOT=...  libtflm_core.a only (framework, KernelRunner)
#   make -f tflm_ops/tflm.mk m7 TFLM_ROOT=... [CMSIS_NN_ROOT=...]   Cortex-M7 libraries (also m4 m33 m55 m3 m0plus):
#                                                                   libtflm_core.a libtflm_kernels.a libtrec_app.a
#   make -f tflm_ops/tflm.mk print-build-dir TARGET=m7 ...          where that configuration's outputs go
#   make -f tflm_ops/tflm.mk print-app-flags TARGET=m7 ...          flags code linked with the library needs
#
# Inputs (see README "TFLM tree"):
#   TFLM_ROOT         tflite-micro checkout (commit 88f8587b3fa6e4e027caf5437b1510a86bf31a60)   required
#   FLATBUFFERS_ROOT  flatbuffers checkout (v25.9.23); default: TFLM's downloads dir, third_party/ of a
#                     create_tflm_tree.py tree, or ../flatbuffers
#   CMSIS_NN_ROOT     CMSIS-NN checkout (e096196a...); Cortex-M targets then use TFLM's CMSIS-NN kernels
#   GEMMLOWP_ROOT     gemmlowp headers; default /usr/include/gemmlowp (Debian libgemmlowp-dev)
#   RUY_ROOT          ruy checkout; default: a no-op stand-in for the one ruy header TFLite includes
#   TFLM_WHEEL_DIR    directory of the wheel's _runtime.so (host-ops); default: found with python3
#   BUILD_ROOT        output root (default build/tflm in this repository; trec_tflm always passes it,
#                     the user cache for an installed package: see docs/TFLM.md)
#   OPT               optimisation (default -O3 on Cortex-M, -O2 on the host)
#   NDEBUG            1 (default on Cortex-M): TFLM's release_with_logs (no DCHECKs, error messages kept)
#   JOBS are make's: use -j.
#
# Outputs go to $(BUILD_ROOT)/<target>[-cmsis_nn]-<hash of the configuration>/, so builds for different
# trees, flags or compilers never mix and each is built once (objects track their headers with -MMD).
# Nothing is written into TFLM_ROOT, FLATBUFFERS_ROOT or CMSIS_NN_ROOT. libtflm_core.a / libtflm_kernels.a
# are TFLM alone. Our glue (tflm/trec_conv.cc) and C kernels (src/*.c) are in the host-ops library and,
# on Cortex-M, in libtrec_app.a with the model-independent firmware app (boards/app/main.cc,
# trec_app_profiler.cc); a program that wants other flags (e.g. -DTREC_SCRATCH_BUDGET=...) compiles
# trec_conv.cc itself, and its object takes precedence over the library's.

TFLM_MK        := $(abspath $(lastword $(MAKEFILE_LIST)))
OPS_DIR        := $(patsubst %/,%,$(dir $(TFLM_MK)))
TREC_ROOT      := $(patsubst %/,%,$(dir $(OPS_DIR)))
BUILD_ROOT     ?= $(TREC_ROOT)/build/tflm
PYTHON         ?= python3
TARGET         ?= host
V              ?= 0

EXPECTED_TFLM_COMMIT := 88f8587b3fa6e4e027caf5437b1510a86bf31a60
TREE_HELP := see README section "TFLM tree" (git clone https://github.com/tensorflow/tflite-micro, \
  git checkout $(EXPECTED_TFLM_COMMIT); flatbuffers v25.9.23; CMSIS-NN e096196a0c49f065abc03d943c583cd50de424ba)

CORES := m0plus m3 m4 m7 m33 m55
TARGETS := host host-core host-ops $(CORES)

# (kernel-runner / print-kernel-runner: see the end of this file)
.PHONY: all lib $(TARGETS) print-build-dir print-app-flags print-app-includes print-libs clean-target
.DEFAULT_GOAL := all

# Convenience goals: one configuration per recursive make.
all:
	@$(MAKE) --no-print-directory -f $(TFLM_MK) TARGET=$(TARGET) lib

host host-core host-ops $(CORES):
	@$(MAKE) --no-print-directory -f $(TFLM_MK) TARGET=$@ lib

ifneq ($(filter lib print-% clean-target kernel-runner,$(MAKECMDGOALS)),)

ifeq ($(filter $(TARGET),$(TARGETS)),)
$(error TARGET=$(TARGET) is not one of: $(TARGETS))
endif

# --------------------------------------------------------------------------------------- trees --
ifeq ($(strip $(TFLM_ROOT)),)
$(error TFLM_ROOT is not set: set TFLM_ROOT to a tflite-micro checkout at $(EXPECTED_TFLM_COMMIT); $(TREE_HELP))
endif
TFLM := $(abspath $(TFLM_ROOT))
ifeq ($(wildcard $(TFLM)/tensorflow/lite/micro/micro_interpreter.h),)
$(error TFLM_ROOT=$(TFLM_ROOT) is not a tflite-micro tree (no tensorflow/lite/micro/micro_interpreter.h); $(TREE_HELP))
endif

TFLM_DOWNLOADS := $(TFLM)/tensorflow/lite/micro/tools/make/downloads
ifeq ($(strip $(FLATBUFFERS_ROOT)),)
FLATBUFFERS_ROOT := $(firstword $(patsubst %/include/flatbuffers/flexbuffers.h,%,$(wildcard \
  $(TFLM_DOWNLOADS)/flatbuffers/include/flatbuffers/flexbuffers.h \
  $(TFLM)/../flatbuffers/include/flatbuffers/flexbuffers.h \
  $(TFLM)/third_party/flatbuffers/include/flatbuffers/flexbuffers.h)))
endif
ifeq ($(wildcard $(FLATBUFFERS_ROOT)/include/flatbuffers/flexbuffers.h),)
$(error flatbuffers headers not found: set FLATBUFFERS_ROOT to a flatbuffers checkout (v25.9.23); $(TREE_HELP))
endif
FLATBUFFERS := $(abspath $(FLATBUFFERS_ROOT))

ifeq ($(strip $(GEMMLOWP_ROOT)),)
GEMMLOWP_ROOT := $(firstword $(patsubst %/fixedpoint/fixedpoint.h,%,$(wildcard \
  /usr/include/gemmlowp/fixedpoint/fixedpoint.h $(TFLM_DOWNLOADS)/gemmlowp/fixedpoint/fixedpoint.h \
  $(TFLM)/third_party/gemmlowp/fixedpoint/fixedpoint.h)))
endif
ifeq ($(wildcard $(GEMMLOWP_ROOT)/fixedpoint/fixedpoint.h),)
$(error gemmlowp headers not found: install Debian libgemmlowp-dev or set GEMMLOWP_ROOT)
endif
GEMMLOWP := $(abspath $(GEMMLOWP_ROOT))

ifeq ($(strip $(RUY_ROOT)),)
RUY_ROOT := $(firstword $(patsubst %/ruy/profiler/instrumentation.h,%,$(wildcard \
  $(TFLM_DOWNLOADS)/ruy/ruy/profiler/instrumentation.h $(TFLM)/third_party/ruy/ruy/profiler/instrumentation.h)) \
  $(OPS_DIR)/tflm/compat)
endif
RUY := $(abspath $(RUY_ROOT))

USE_CMSIS_NN :=
ifneq ($(strip $(CMSIS_NN_ROOT)),)
ifneq ($(filter $(TARGET),$(CORES)),)
ifeq ($(wildcard $(CMSIS_NN_ROOT)/Include/arm_nnfunctions.h),)
$(error CMSIS_NN_ROOT=$(CMSIS_NN_ROOT) is not a CMSIS-NN tree (no Include/arm_nnfunctions.h); $(TREE_HELP))
endif
USE_CMSIS_NN := 1
CMSIS_NN := $(abspath $(CMSIS_NN_ROOT))
endif
endif

# ------------------------------------------------------------------------------------ toolchain --
MCPU_m0plus := -mcpu=cortex-m0plus -mfloat-abi=soft
MCPU_m3     := -mcpu=cortex-m3 -mfloat-abi=soft
MCPU_m4     := -mcpu=cortex-m4 -mfpu=fpv4-sp-d16 -mfloat-abi=hard
MCPU_m7     := -mcpu=cortex-m7 -mfpu=fpv5-sp-d16 -mfloat-abi=hard
MCPU_m33    := -mcpu=cortex-m33 -mfpu=fpv5-sp-d16 -mfloat-abi=hard
MCPU_m55    := -mcpu=cortex-m55 -mfloat-abi=hard

ifneq ($(filter $(TARGET),$(CORES)),)
CROSS_COMPILE ?= arm-none-eabi-
CC      := $(CROSS_COMPILE)gcc
CXX     := $(CROSS_COMPILE)g++
AR      := $(CROSS_COMPILE)ar
OPT     ?= -O3
NDEBUG  ?= 1
ARCH_FLAGS := $(MCPU_$(TARGET)) -mthumb --specs=nano.specs -fsigned-char
TARGET_DEFINES := -DTF_LITE_MCU_DEBUG_LOG
else
CC      := $(or $(HOST_CC),gcc)
CXX     := $(or $(HOST_CXX),g++)
AR      := ar
OPT     ?= -O2
NDEBUG  ?= 0
ARCH_FLAGS :=
TARGET_DEFINES := -DTF_LITE_USE_CTIME
endif
ifeq ($(TARGET),host-ops)
ARCH_FLAGS += -fPIC -fvisibility=hidden -fvisibility-inlines-hidden
endif

# Defines every translation unit that sees TFLM headers must share (they change struct layouts).
API_DEFINES := -DTF_LITE_STATIC_MEMORY -DTF_LITE_DISABLE_X86_NEON
ifeq ($(NDEBUG),1)
API_DEFINES += -DNDEBUG
endif
ifeq ($(filter $(TARGET),$(CORES)),)
# As TFLM's patched flatbuffers (newlib already gives 0; glibc would select locale code that
# lives in flatbuffers' util.cpp, which TFLM does not build).
API_DEFINES += -DFLATBUFFERS_LOCALE_INDEPENDENT=0
endif
ifeq ($(TARGET),host-ops)
# The tflite-micro wheel is built with compression support; MicroContext's layout depends on it.
API_DEFINES += -DUSE_TFLM_COMPRESSION=1
endif
ifeq ($(USE_CMSIS_NN),1)
API_DEFINES += -DCMSIS_NN
endif

INCLUDES := -I$(TFLM) -I$(FLATBUFFERS)/include -I$(GEMMLOWP) -I$(RUY) \
            $(if $(USE_CMSIS_NN),-I$(CMSIS_NN) -I$(CMSIS_NN)/Include)
COMMON_FLAGS := $(ARCH_FLAGS) $(OPT) -ffunction-sections -fdata-sections -fno-unwind-tables \
                -fno-asynchronous-unwind-tables -fmessage-length=0 $(API_DEFINES) $(TARGET_DEFINES) -MMD -MP
CXXFLAGS_TFLM := -std=c++17 -fno-rtti -fno-exceptions -fno-threadsafe-statics $(COMMON_FLAGS) -w
CFLAGS_TFLM   := -std=c11 $(COMMON_FLAGS) -w
OUR_WARN      := -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers

# ----------------------------------------------------------------------------- build directory --
# host-core is a subset of host: both share one directory.
BUILD_KIND := $(patsubst host-core,host,$(TARGET))
CONFIG := $(BUILD_KIND)|$(TFLM)|$(FLATBUFFERS)|$(GEMMLOWP)|$(RUY)|$(CMSIS_NN)|$(CXXFLAGS_TFLM)|$(CFLAGS_TFLM)|$(shell $(CXX) -dumpfullversion -dumpmachine 2>/dev/null)
CONFIG_HASH := $(shell printf '%s' '$(CONFIG)' | sha1sum | cut -c1-10)
BUILD_DIR ?= $(BUILD_ROOT)/$(BUILD_KIND)$(if $(USE_CMSIS_NN),-cmsis_nn)-$(CONFIG_HASH)
OBJ := $(BUILD_DIR)/obj

# --------------------------------------------------------------------------------------- sources --
MICRO := $(TFLM)/tensorflow/lite/micro
KDIR  := $(MICRO)/kernels
# TFLM's framework: tensorflow/lite/micro/*.cc and its sub-libraries, plus the TFLite files TFLM builds
# (every .cc/.c under tensorflow/ outside lite/micro and lite/experimental, minus lite/array.cc).
TFL_SRCS := $(filter-out $(TFLM)/tensorflow/lite/array.cc,$(addprefix $(TFLM)/,$(shell cd $(TFLM) && find tensorflow \
  \( -path tensorflow/lite/micro -o -path tensorflow/lite/experimental \) -prune -o \( -name '*.cc' -o -name '*.c' \) -print)))
CORE_SRCS := $(filter-out %_test.cc,$(wildcard $(MICRO)/*.cc $(MICRO)/arena_allocator/*.cc \
             $(MICRO)/memory_planner/*.cc $(MICRO)/tflite_bridge/*.cc)) $(TFL_SRCS) \
             $(KDIR)/kernel_util.cc $(KDIR)/kernel_runner.cc $(KDIR)/micro_tensor_utils.cc
# Kernels: TFLM's list is every kernels/*.cc except tests and test data.
KERNEL_BASE := $(filter-out %_test.cc %_test_common.cc %_generated_data.cc $(KDIR)/kernel_util.cc \
               $(KDIR)/kernel_runner.cc $(KDIR)/micro_tensor_utils.cc,$(wildcard $(KDIR)/*.cc))
ifeq ($(USE_CMSIS_NN),1)
# TFLM's specialisation: kernels/cmsis_nn/X.cc replaces kernels/X.cc.
CMSIS_SPECIAL := $(notdir $(wildcard $(KDIR)/cmsis_nn/*.cc))
KERNEL_SRCS := $(foreach f,$(KERNEL_BASE),$(if $(filter $(notdir $(f)),$(CMSIS_SPECIAL)),$(KDIR)/cmsis_nn/$(notdir $(f)),$(f)))
CMSIS_SRCS := $(shell find $(CMSIS_NN)/Source -name '*.c' | sort)
else
KERNEL_SRCS := $(KERNEL_BASE)
CMSIS_SRCS :=
endif

obj = $(OBJ)$(abspath $(1)).o
CORE_OBJS   := $(foreach s,$(CORE_SRCS),$(call obj,$(s)))
KERNEL_OBJS := $(foreach s,$(KERNEL_SRCS) $(CMSIS_SRCS),$(call obj,$(s)))

# host-ops: our glue, our C kernels and the few TFLite helpers the glue calls, all with hidden
# visibility: libtensorflow_cc (loaded by the wheel) exports TFLite's helpers globally, built with
# another TfLiteTensor layout, and would otherwise be bound in their place.
OPS_SO        := $(BUILD_DIR)/libtrec_tflm_ops.so
OPS_GLUE      := $(OPS_DIR)/tflm/trec_conv.cc $(OPS_DIR)/tflm/trec_registerer.cc
OPS_TFL       := $(TFLM)/tensorflow/lite/kernels/kernel_util.cc \
                 $(TFLM)/tensorflow/lite/kernels/internal/quantization_util.cc \
                 $(TFLM)/tensorflow/lite/core/c/common.cc
OPS_C         := $(sort $(wildcard $(OPS_DIR)/src/*.c))
OPS_OBJS      := $(foreach s,$(OPS_GLUE) $(OPS_TFL) $(OPS_C),$(call obj,$(s)))
OPS_INCLUDES  := -I$(OPS_DIR)/include -I$(OPS_DIR)/src -I$(OPS_DIR)/tflm -I$(TFLM) \
                 -isystem $(TFLM) -isystem $(FLATBUFFERS)/include -isystem $(GEMMLOWP) -isystem $(RUY)
ifeq ($(TARGET),host-ops)
ifeq ($(strip $(TFLM_WHEEL_DIR)),)
TFLM_WHEEL_DIR := $(shell $(PYTHON) -c "import importlib.util, os; s = importlib.util.find_spec('tflite_micro'); \
  print(os.path.join(os.path.dirname(s.origin), 'python', 'tflite_micro') if s and s.origin else '')" 2>/dev/null)
endif
ifeq ($(wildcard $(TFLM_WHEEL_DIR)/_runtime.so),)
$(error the tflite-micro wheel's _runtime.so was not found (TFLM_WHEEL_DIR='$(TFLM_WHEEL_DIR)'): pip install tflite-micro==0.dev20260203175027 or set TFLM_WHEEL_DIR)
endif
WHEEL := $(abspath $(TFLM_WHEEL_DIR))
ifeq ($(wildcard $(TFLM)/python/tflite_micro/python_ops_resolver.h),)
$(error $(TFLM) has no python/tflite_micro/python_ops_resolver.h (a create_tflm_tree.py export?): the host op library needs the tflite-micro git checkout; $(TREE_HELP))
endif
endif

ifeq ($(V),1)
Q :=
else
Q := @
endif

# --------------------------------------------------------------------------------------- targets --
ifeq ($(TARGET),host-ops)
lib: $(OPS_SO)
else ifeq ($(TARGET),host-core)
lib: $(BUILD_DIR)/libtflm_core.a
else ifeq ($(TARGET),host)
lib: $(BUILD_DIR)/libtflm_core.a $(BUILD_DIR)/libtflm_kernels.a
else
lib: $(BUILD_DIR)/libtflm_core.a $(BUILD_DIR)/libtflm_kernels.a $(BUILD_DIR)/libtrec_app.a
endif
	@echo "  DONE    $(BUILD_DIR)"

$(BUILD_DIR)/libtflm_core.a: $(CORE_OBJS)
	@echo "  AR      $@"
	$(Q)rm -f $@ && $(AR) rcs $@ $^

$(BUILD_DIR)/libtflm_kernels.a: $(KERNEL_OBJS)
	@echo "  AR      $@"
	$(Q)rm -f $@ && $(AR) rcs $@ $^

# Cortex-M: the model-independent part of the firmware app (boards/app/, docs/TFLM.md), our glue and
# C kernels, so a firmware project compiles only its per-model files.
APP_LIB_SRCS := $(TREC_ROOT)/boards/app/main.cc $(TREC_ROOT)/boards/app/trec_app_profiler.cc \
                $(OPS_DIR)/tflm/trec_conv.cc $(OPS_C)
APP_LIB_OBJS := $(foreach s,$(APP_LIB_SRCS),$(call obj,$(s)))
APP_INCLUDES := -I$(TREC_ROOT)/boards/app -I$(TREC_ROOT)/boards/common -I$(TREC_ROOT)/boards/common/eembc \
                $(OPS_INCLUDES)
$(BUILD_DIR)/libtrec_app.a: $(APP_LIB_OBJS)
	@echo "  AR      $@"
	$(Q)rm -f $@ && $(AR) rcs $@ $^

$(OBJ)$(TREC_ROOT)/boards/%.cc.o: $(TREC_ROOT)/boards/%.cc
	@mkdir -p $(@D)
	@echo "  CXX     boards/$*.cc"
	$(Q)$(CXX) -std=c++17 -fno-rtti -fno-exceptions -fno-threadsafe-statics -g $(COMMON_FLAGS) $(OUR_WARN) \
	  $(APP_INCLUDES) -c $< -o $@

$(OPS_SO): $(OPS_OBJS) $(WHEEL)/_runtime.so
	@echo "  LD      $@"
	$(Q)$(CXX) -shared -Wl,-Bsymbolic -Wl,--no-undefined -o $@.tmp $(OPS_OBJS) \
	  -L$(WHEEL) -l:_runtime.so -Wl,-rpath,$(WHEEL) && mv -f $@.tmp $@

# Third-party sources (quiet: -w).
$(OBJ)$(TFLM)/%.cc.o: $(TFLM)/%.cc
	@mkdir -p $(@D)
	@echo "  CXX     $(patsubst $(TFLM)/%,%,$<)"
	$(Q)$(CXX) $(CXXFLAGS_TFLM) $(INCLUDES) -c $< -o $@

$(OBJ)$(TFLM)/%.c.o: $(TFLM)/%.c
	@mkdir -p $(@D)
	@echo "  CC      $(patsubst $(TFLM)/%,%,$<)"
	$(Q)$(CC) $(CFLAGS_TFLM) $(INCLUDES) -c $< -o $@

ifeq ($(USE_CMSIS_NN),1)
$(OBJ)$(CMSIS_NN)/%.c.o: $(CMSIS_NN)/%.c
	@mkdir -p $(@D)
	@echo "  CC      CMSIS-NN/$(patsubst $(CMSIS_NN)/%,%,$<)"
	$(Q)$(CC) $(CFLAGS_TFLM) $(INCLUDES) -c $< -o $@
endif

# Our sources (host-ops only; warnings on).
$(OBJ)$(OPS_DIR)/%.cc.o: $(OPS_DIR)/%.cc
	@mkdir -p $(@D)
	@echo "  CXX     tflm_ops/$*.cc"
	$(Q)$(CXX) -std=c++17 -fno-rtti -fno-exceptions -fno-threadsafe-statics $(COMMON_FLAGS) $(OUR_WARN) \
	  $(OPS_INCLUDES) -c $< -o $@

$(OBJ)$(OPS_DIR)/%.c.o: $(OPS_DIR)/%.c
	@mkdir -p $(@D)
	@echo "  CC      tflm_ops/$*.c"
	$(Q)$(CC) -std=c99 $(filter-out -fvisibility-inlines-hidden,$(COMMON_FLAGS)) $(OUR_WARN) \
	  -I$(OPS_DIR)/include -I$(OPS_DIR)/src -c $< -o $@

# ------------------------------------------------------------- host kernel test (KernelRunner) --
# make -f tflm_ops/tflm.mk TARGET=host-core kernel-runner [TREC_SCRATCH_BUDGET=N]
#   -> $(BUILD_DIR)/tests/trec_conv_kernel_runner[-budgetN]: tflm/tests/trec_conv_kernel_runner.cc,
#   our glue and C kernels, linked with libtflm_core.a (see tests/test_tflm_kernel.py).
RUNNER_SUFFIX := $(if $(TREC_SCRATCH_BUDGET),-budget$(TREC_SCRATCH_BUDGET))
RUNNER        := $(BUILD_DIR)/tests/trec_conv_kernel_runner$(RUNNER_SUFFIX)
RUNNER_SRCS   := $(OPS_DIR)/tflm/tests/trec_conv_kernel_runner.cc $(OPS_DIR)/tflm/trec_conv.cc
RUNNER_DEFS   := $(if $(TREC_SCRATCH_BUDGET),-DTREC_SCRATCH_BUDGET=$(TREC_SCRATCH_BUDGET))
.PHONY: kernel-runner print-kernel-runner
kernel-runner: $(RUNNER)
print-kernel-runner:
	@echo $(RUNNER)
$(RUNNER): $(RUNNER_SRCS) $(OPS_C) $(wildcard $(OPS_DIR)/tflm/*.h $(OPS_DIR)/include/trec/*.h $(OPS_DIR)/src/*.h) \
           $(BUILD_DIR)/libtflm_core.a
	@mkdir -p $(@D)/obj$(RUNNER_SUFFIX)
	@echo "  LD      $@"
	$(Q)for c in $(OPS_C); do $(CC) -std=c99 $(OPT) -g $(OUR_WARN) -I$(OPS_DIR)/include -I$(OPS_DIR)/src \
	  -c $$c -o $(@D)/obj$(RUNNER_SUFFIX)/$$(basename $$c).o || exit 1; done
	$(Q)$(CXX) -std=c++17 -fno-rtti -fno-exceptions $(OPT) -g $(API_DEFINES) $(TARGET_DEFINES) $(RUNNER_DEFS) \
	  $(OUR_WARN) $(OPS_INCLUDES) -Wl,--gc-sections -o $@ $(RUNNER_SRCS) $(@D)/obj$(RUNNER_SUFFIX)/*.o \
	  $(BUILD_DIR)/libtflm_core.a

-include $(CORE_OBJS:.o=.d) $(KERNEL_OBJS:.o=.d) $(OPS_OBJS:.o=.d) $(APP_LIB_OBJS:.o=.d)

# ------------------------------------------------------------------------------ for other builds --
print-build-dir:
	@echo $(BUILD_DIR)

# Flags a program linked with these libraries compiles TFLM-facing code with (ABI-relevant defines,
# char signedness), include directories, and the link arguments.
print-app-flags:
	@echo $(filter -fsigned-char,$(ARCH_FLAGS)) $(API_DEFINES)

print-app-includes:
	@echo $(TFLM) $(FLATBUFFERS)/include $(GEMMLOWP) $(RUY) $(if $(USE_CMSIS_NN),$(CMSIS_NN) $(CMSIS_NN)/Include) \
	  $(OPS_DIR)/include $(OPS_DIR)/src $(OPS_DIR)/tflm

print-libs:
	@echo -Wl,--start-group $(if $(filter $(TARGET),$(CORES)),$(BUILD_DIR)/libtrec_app.a) \
	  $(if $(filter host-core,$(TARGET)),,$(BUILD_DIR)/libtflm_kernels.a) $(BUILD_DIR)/libtflm_core.a -Wl,--end-group

clean-target:
	rm -rf $(BUILD_DIR)

endif
