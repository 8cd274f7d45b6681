"""Benchmarks: kernels on emulated Cortex-M, models on boards, training-step cost."""
