"""The TREC kernel on emulated Cortex-M7 (qemu_m7) and Cortex-M4 (qemu_m4), bit for bit with golden.

The kernel is compiled with the real DSP intrinsics (SMLAD/SXTB16); tensors and expected outputs
come from trec_tflm.spec.golden through trec_tflm.bench.kernel_runner (firmware tflm_ops/bench/kernel_bench.c).
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers.native_trec import make_case, split

from trec_tflm.bench import kernel_runner as kernel_bench
from trec_tflm.spec import golden

pytestmark = pytest.mark.qemu


def _case(name, case, scratch=0, dense=False):
    tensors, params = split(case)
    return kernel_bench.KernelCase(name, *tensors, params=params, scratch_bytes=scratch, dense=dense)


def correctness_cases():
    from trec_tflm.host import kernels as native

    cases = []
    grid = [(1, 3, 1, "SAME"), (3, 5, 1, "SAME"), (3, 3, 2, "VALID"), (8, 3, 1, "SAME"), (16, 1, 1, "VALID"),
            (16, 5, 2, "SAME"), (64, 3, 1, "SAME"), (64, 7, 2, "VALID"), (3, 7, 1, "SAME")]
    for i, (cin, k, s, pad) in enumerate(grid):
        cases.append(_case(f"cin{cin}_k{k}_s{s}_{pad}", make_case(500 + i, cin, k, s, pad), dense=i % 3 == 0))
    for bits in (1, 8, 9, 16):  # 1-byte and 2-byte cluster ids
        cases.append(_case(f"bits{bits}", make_case(600 + bits, 4, 3, 1, "SAME", bits=bits, length=7)))
    # the smallest scratch on noise with H=16 (every row its own cluster, the budgeted worst case):
    # the multi-pass plan
    c = make_case(700, 16, 3, 1, "SAME", length=12, bits=16, h=12, w=12)
    rng = np.random.default_rng(7)
    c["input"] = rng.integers(-128, 128, c["input"].shape, dtype=np.int8)
    c["filter"] = rng.integers(-127, 128, (32, 3, 3, 16), dtype=np.int8)  # many channels: several passes
    c["bias"] = rng.integers(-3000, 3000, 32).astype(np.int32)
    c["output_multiplier"] = np.full(32, 1 << 30, np.int32)
    c["output_shift"] = np.full(32, -9, np.int32)
    _, least = native.kernels("host").trec_buffer_sizes(c["input"].shape, c["filter"].shape, sub_vector_length=12,
                                                        hash_bits=16, hash_center=c["hash_center"], padding="SAME")
    cases.append(_case("min_scratch", c, scratch=least))
    return cases


@pytest.mark.parametrize("core", ["m7", "m4"])
def test_trec_bit_exact_on_qemu(core, tmp_path):
    cases = correctness_cases()
    res = kernel_bench.build_and_run(core, cases, tmp_path)
    assert set(res.trec) == {c.name for c in cases}, res.stdout[-3000:]
    bad = {k: v.detail for k, v in res.trec.items() if not v.ok}
    bad.update({f"dense {k}": v.detail for k, v in res.dense.items() if not v.ok})
    assert not bad, f"mismatches on {core}: {bad}"
    assert res.bad_args_ok, res.stdout[-2000:]
    assert res.exit_code == 0
    assert res.trec["min_scratch"].passes > 1  # the small-scratch plan really ran
    # the core reports its plan's scatter cost: what calibrate fits the cost model on
    assert all(v.scatter_tenths > 0 for v in res.trec.values()), res.stdout[-2000:]
    golden_clusters = {c.name: sum(int(s.clusters.sum()) for s in c.golden_trec()[1]) for c in cases}
    assert {k: v.clusters for k, v in res.trec.items()} == golden_clusters


def test_profile_phases_add_up(tmp_path):
    case = _case("phases", make_case(800, 16, 3, 1, "SAME", length=8, bits=6, h=10, w=10))
    res = kernel_bench.build_and_run("m7", [case], tmp_path, profile=True)
    r = res.trec["phases"]
    assert r.ok and all(v > 0 for v in r.phases.values()), res.stdout
    # phases cover the call except the entry checks (a few hundred instructions)
    assert 0.9 * r.ticks <= sum(r.phases.values()) <= r.ticks


def test_firmware_detects_a_wrong_expected_output(tmp_path, monkeypatch):
    """Negative control: a corrupted expectation must make the firmware report a mismatch."""
    orig = golden.trec_conv2d_s8

    def corrupted(*a, **kw):
        y, st = orig(*a, **kw)
        y = y.copy()
        y.flat[y.size // 2] = np.int8(int(y.flat[y.size // 2]) ^ 1)
        return y, st

    monkeypatch.setattr(golden, "trec_conv2d_s8", corrupted)
    res = kernel_bench.build_and_run("m7", [_case("corrupt", make_case(900, 3, 3, 1, "SAME"))], tmp_path)
    assert res.exit_code != 0 and not res.trec["corrupt"].ok


def test_chunks_of_one_to_three_channels_on_the_simd_path(tmp_path):
    """Tight scratch leaves room for 1-3 output channels per pass: the SIMD products then compute
    only those lanes of a channel quad and the scatter takes its unrolled 1-3 channel rows. Every
    budget from the least up must stay bit-exact, and the chunk sizes must really occur, for
    strips of 16 channels (the products' unrolled loop) and of 32 (their general loop)."""
    from trec_tflm.host import kernels as native
    from trec_tflm.spec import quant

    rng = np.random.default_rng(31)
    cout, k, hw = 16, 5, 16
    cases = {}
    for cin in (16, 32):
        x = rng.integers(-128, 128, (1, 6, 6, cin), dtype=np.int8)
        x = np.ascontiguousarray(np.repeat(np.repeat(x, 3, axis=1), 3, axis=2)[:, :hw, :hw])  # a few dozen clusters
        scale = rng.uniform(0.3, 3.0, cout) / (np.sqrt(k * k * cin) * 128 * 74 / 40)
        mult, shift = quant.quantize_multipliers(scale)
        c = dict(input=x, filter=rng.integers(-127, 128, (cout, k, k, cin), dtype=np.int8),
                 bias=rng.integers(-3000, 3000, cout).astype(np.int32),
                 hash=rng.integers(-127, 128, (cin, 6), dtype=np.int8),  # L = Cin: one-pixel strips
                 input_zero_point=-128, output_zero_point=5, output_multiplier=mult, output_shift=shift,
                 sub_vector_length=cin, hash_bits=6, hash_center="mean", stride=1, padding="SAME", dilation=1,
                 activation_min=-128, activation_max=127)
        _, least = native.kernels("host").trec_buffer_sizes(x.shape, c["filter"].shape, sub_vector_length=cin,
                                                            hash_bits=6, hash_center="mean", padding="SAME")
        cases[cin] = [_case(f"c{cin}_b{b}", c, scratch=b) for b in sorted({least + i * 16 * cin for i in range(14)})]
    every = [cs for layer in cases.values() for cs in layer]
    res = kernel_bench.build_and_run("m7", every, tmp_path)
    bad = {k: v.detail for k, v in res.trec.items() if not v.ok}
    assert set(res.trec) == {cs.name for cs in every} and not bad, (bad, res.stdout[-2000:])
    for cin, layer in cases.items():
        chunks = {res.trec[cs.name].chunk for cs in layer}
        assert {1, 2, 3} <= chunks, (cin, chunks)


@pytest.mark.parametrize("core", ["m7", "m4"])
def test_interleaved_cluster_pairs_of_one_pixel_strips(core, tmp_path):
    """Chunks of two channel quads or more on one-pixel strips take the interleaved cluster pairs,
    whose loop is unrolled whole for L = 32 and L = 64 (weights two words per LDRD at constant
    offsets) and kept as a loop for other L. Bit for bit at several budgets, on both cores."""
    from trec_tflm.host import kernels as native
    from trec_tflm.spec import quant

    rng = np.random.default_rng(37)
    cout, k, hw = 16, 3, 12
    cases = []
    for cin in (32, 64, 48):  # unrolled, unrolled, loop
        x = rng.integers(-128, 128, (1, 4, 4, cin), dtype=np.int8)
        x = np.ascontiguousarray(np.repeat(np.repeat(x, 3, axis=1), 3, axis=2)[:, :hw, :hw])
        scale = rng.uniform(0.3, 3.0, cout) / (np.sqrt(k * k * cin) * 128 * 74 / 40)
        mult, shift = quant.quantize_multipliers(scale)
        c = dict(input=x, filter=rng.integers(-127, 128, (cout, k, k, cin), dtype=np.int8),
                 bias=rng.integers(-3000, 3000, cout).astype(np.int32),
                 hash=rng.integers(-127, 128, (cin, 5), dtype=np.int8),
                 input_zero_point=-3, output_zero_point=-7, output_multiplier=mult, output_shift=shift,
                 sub_vector_length=cin, hash_bits=5, hash_center="mean", stride=1, padding="SAME", dilation=1,
                 activation_min=-128, activation_max=127)
        size, _ = native.kernels("host").trec_buffer_sizes(x.shape, c["filter"].shape, sub_vector_length=cin,
                                                           hash_bits=5, hash_center="mean", padding="SAME")
        cases += [_case(f"c{cin}_x{f}", c, scratch=size * f) for f in (2, 4)]
    res = kernel_bench.build_and_run(core, cases, tmp_path)
    bad = {k: v.detail for k, v in res.trec.items() if not v.ok}
    assert set(res.trec) == {cs.name for cs in cases} and not bad, (bad, res.stdout[-2000:])
    assert all(r.chunk >= 8 for r in res.trec.values()), {k: r.chunk for k, r in res.trec.items()}
