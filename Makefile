# trec-tflm: the two commands a user needs are `make demo` and `make test`.
# Both install what they need: Debian packages (when root or sudo is available) and a
# virtual environment in .venv with this package and its pinned Python dependencies.

PYTHON      ?= python3
VENV        ?= .venv
PY          := $(VENV)/bin/python
PIP         := $(PY) -m pip
SYSTEM_PKGS := gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm dataset-fashion-mnist libgemmlowp-dev
SUDO        := $(shell [ "$$(id -u)" = 0 ] || command -v sudo >/dev/null 2>&1 && { [ "$$(id -u)" = 0 ] || echo sudo; })
DEMO_ARGS   ?=
PYTEST_ARGS ?=

export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONUNBUFFERED = 1

# The pinned TFLM, flatbuffers and CMSIS-NN trees (the TFLM tier): TFLM_ROOT, FLATBUFFERS_ROOT and
# CMSIS_NN_ROOT from the environment, else checkouts in third_party/ that `make deps` fetches.
# deps writes the trees it found to $(TREES_ENV); the recipes below read it when they run.
TREES_ENV   := build/trees.env
WITH_TREES  := set -a; [ -f $(TREES_ENV) ] && . ./$(TREES_ENV); set +a;

.PHONY: demo test deps system-deps venv bench-kernels bench-models bench-train clean

demo: system-deps $(VENV)/.installed deps
	@$(WITH_TREES) $(VENV)/bin/trec-tflm demo $(DEMO_ARGS)

test: system-deps $(VENV)/.installed-dev deps
	@$(WITH_TREES) $(PY) -m pytest $(PYTEST_ARGS)

# Fetches what is missing (shallow git clones at the pinned commits), checks what is configured;
# without network it says so in one line per tree and the TFLM tier is skipped (exit 0).
deps:
	@$(PYTHON) -m trec_tflm.deps --dir third_party --write-env $(TREES_ENV)

# Debian packages: the ARM toolchain and QEMU (kernel tests on emulated Cortex-M),
# Fashion-MNIST (real images for demo, tests and benchmarks) and gemmlowp headers (TFLM builds).
system-deps:
	@missing=""; for p in $(SYSTEM_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] || command -v sudo >/dev/null 2>&1; then \
	    echo "installing Debian packages:$$missing"; \
	    $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	  else \
	    echo "warning: cannot install$$missing (not root, no sudo); tests that need them will skip"; \
	  fi; \
	fi

$(VENV)/bin/python:
	$(PYTHON) -m venv --system-site-packages $(VENV)

# the tflm extra (the tflite-micro wheel): the demo evaluates int8 models in TFLM on the host
$(VENV)/.installed: $(VENV)/bin/python setup.py
	$(PIP) install -q -e '.[tflm]'
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed-dev

$(VENV)/.installed-bench: $(VENV)/.installed-dev
	$(PIP) install -q -e '.[dev,bench]'
	touch $@

# Kernel instructions on emulated Cortex-M7 and M4 (docs/BENCHMARKS.md); BENCH_MODELS: a directory
# of trained models from examples/benchmarks/accuracy.sh (default: trained on first use).
BENCH_MODELS ?=
bench-kernels: system-deps $(VENV)/.installed-bench deps
	@$(WITH_TREES) $(VENV)/bin/trec-tflm bench-kernels --core m7 $(if $(BENCH_MODELS),--models-dir $(BENCH_MODELS))
	@$(WITH_TREES) $(VENV)/bin/trec-tflm bench-kernels --core m4 $(if $(BENCH_MODELS),--models-dir $(BENCH_MODELS))

# Zoo models whole, TREC vs dense twin on qemu_m7 and qemu_m4 (trec_tflm/bench/models.py has the schedule);
# BENCH_MODELS_ARGS: e.g. --models resnet8 --dataset-path CIFAR10_DIR, --models-dir DIR, --no-tune, --json
BENCH_MODELS_ARGS ?=
bench-models: system-deps $(VENV)/.installed deps
	@$(WITH_TREES) $(VENV)/bin/trec-tflm bench-models $(BENCH_MODELS_ARGS)

bench-train: $(VENV)/.installed
	$(VENV)/bin/trec-tflm bench-train

clean:
	rm -rf build demo_out .pytest_cache
