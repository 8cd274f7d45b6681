"""The STM32 boards (boards/nucleo_f746zg, boards/disco_f469ni) without hardware:

* the protocol app and the hello app build and link for them (and for the QEMU boards, so
  boards/firmware.mk serves all four), within the boards' flash / RAM / CCM;
* images that do not fit are refused at link time;
* the vector table is at the start of flash with the initial stack pointer at the top of SRAM,
  the reset handler next, and the device's number of IRQ vectors with USART3 and TIM6 wired;
* the clock plan (clock_config.h, compiled for the host) gives 216 / 180 MHz with PLL, bus and
  flash wait-state values inside the reference manuals' limits, and the register encodings put
  the fields where RM0385 / RM0386 say.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from trec_tflm.target import qemu

ROOT = Path(__file__).resolve().parents[1]
EEMBC_DIR = ROOT / "boards" / "common" / "eembc"
PROTOCOL_APP = ROOT / "tests" / "firmware" / "protocol"
HELLO_APP = ROOT / "tests" / "firmware" / "hello"
KB = 1024

# Facts from the reference manuals (RM0385 STM32F74x memory map and vector table; RM0386
# STM32F469 memory map and vector table) and the datasheets' clock limits.
STM32 = {
    "nucleo_f746zg": dict(
        flash=(0x0800_0000, 1024 * KB), ram=(0x2000_0000, 320 * KB), ccm=None,
        irqs=98, usart3_irq=39, tim6_irq=54, cpu="Cortex-M7",
        sysclk=216_000_000, hse=8_000_000, max_pclk1=54_000_000, max_pclk2=108_000_000,
        # HCLK upper bound per wait state at 2.7-3.6 V (RM0385 flash latency table)
        ws_limits_mhz=[30, 60, 90, 120, 150, 180, 210, 216], usart_brr_frac=False),
    "disco_f469ni": dict(
        flash=(0x0800_0000, 2048 * KB), ram=(0x2000_0000, 320 * KB), ccm=(0x1000_0000, 64 * KB),
        irqs=93, usart3_irq=39, tim6_irq=54, cpu="Cortex-M4",
        sysclk=180_000_000, hse=8_000_000, max_pclk1=45_000_000, max_pclk2=90_000_000,
        ws_limits_mhz=[30, 60, 90, 120, 150, 180], usart_brr_frac=True),
}
PLLCFGR_RESET = 0x2400_3010  # RCC_PLLCFGR reset value on both devices


def _tool(name: str) -> str:
    path = shutil.which("arm-none-eabi-" + name)
    if not path:
        pytest.skip(f"arm-none-eabi-{name} not found (Debian: gcc-arm-none-eabi)")
    return path


@pytest.fixture(scope="module")
def toolchain():
    """Tests that build firmware take this fixture and carry the `toolchain` marker."""


def build_protocol(board: str, build_dir: Path, **kw) -> Path:
    return qemu.build_firmware(board, [EEMBC_DIR / "ee_protocol.c", PROTOCOL_APP / "model.c",
                                       PROTOCOL_APP / "main.c"],
                               include_dirs=[EEMBC_DIR], build_dir=build_dir, app="protocol",
                               extra_cflags=["-Wextra", "-Werror", "-Wno-override-init"], **kw)


def build_hello(board: str, build_dir: Path, defines=()) -> Path:
    return qemu.build_firmware(board, [HELLO_APP / "main.c", HELLO_APP / "cxx_part.cc"],
                               build_dir=build_dir, app="hello", defines=defines)


@pytest.fixture(scope="module")
def protocol_elves(toolchain, tmp_path_factory):
    out = {}
    for board in list(STM32) + list(qemu.QEMU_BOARDS):
        out[board] = build_protocol(board, tmp_path_factory.mktemp(f"proto_{board}"))
    return out


def sections(elf: Path) -> dict[str, tuple[int, int]]:
    """name -> (address, size) of the allocated sections (arm-none-eabi-size -A)."""
    out = subprocess.run([_tool("size"), "-A", "-d", str(elf)], capture_output=True, text=True,
                         check=True).stdout
    secs = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit() and int(parts[2]) != 0:
            secs[parts[0]] = (int(parts[2]), int(parts[1]))
    return secs


def symbols(elf: Path) -> dict[str, int]:
    out = subprocess.run([_tool("nm"), str(elf)], capture_output=True, text=True, check=True).stdout
    syms = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3:
            syms[parts[2]] = int(parts[0], 16)
    return syms


def load_addresses(elf: Path) -> dict[str, int]:
    """LMA of each section (objdump -h), to check that .data's image is in flash."""
    out = subprocess.run([_tool("objdump"), "-h", str(elf)], capture_output=True, text=True,
                         check=True).stdout
    lma = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 6 and parts[0].isdigit():
            lma[parts[1]] = int(parts[4], 16)
    return lma


def in_region(addr: int, size: int, region) -> bool:
    return region is not None and region[0] <= addr and addr + size <= region[0] + region[1]


# ------------------------------------------------------------------------------ builds --

@pytest.mark.toolchain
@pytest.mark.parametrize("board", list(STM32) + ["qemu_m7", "qemu_m4"])
def test_protocol_app_builds(protocol_elves, board):
    elf = protocol_elves[board]
    assert elf.is_file() and elf.with_suffix(".bin").is_file()
    syms = symbols(elf)
    for name in ("ee_protocol_run", "app_invoke", "board_init", "board_getc", "Reset_Handler"):
        assert name in syms, name


@pytest.mark.toolchain
@pytest.mark.parametrize("board", list(STM32))
def test_hello_app_builds(toolchain, tmp_path, board):
    """The QEMU boards' hello app (C++ constructors, printf with floats) links on the STM32s."""
    elf = build_hello(board, tmp_path)
    syms = symbols(elf)
    assert "hello_cxx_check" in syms and "__libc_init_array" in syms


@pytest.mark.toolchain
@pytest.mark.parametrize("board", list(STM32))
def test_sections_fit_the_memory_map(protocol_elves, board):
    spec = STM32[board]
    elf = protocol_elves[board]
    secs = sections(elf)
    lma = load_addresses(elf)
    flash_used = ram_used = 0
    for name, (addr, size) in secs.items():
        if name.startswith((".debug", ".comment", ".ARM.attributes")):
            continue
        if in_region(addr, size, spec["flash"]):
            flash_used += size
        elif in_region(addr, size, spec["ram"]):
            ram_used += size
            if name == ".data":  # initial values are loaded from flash
                assert in_region(lma[".data"], size, spec["flash"])
                flash_used += size
        elif in_region(addr, size, spec["ccm"]):
            pass
        else:
            pytest.fail(f"{board}: section {name} at {addr:#x}+{size} is outside flash/SRAM/CCM")
    syms = symbols(elf)
    stack = syms["__stack_top"] - syms["__stack_limit"]
    assert 0 < flash_used <= spec["flash"][1]
    assert 0 < ram_used and stack == 16 * KB
    assert ram_used + stack <= spec["ram"][1]
    # The main stack sits at the top of SRAM, above everything else in it.
    assert syms["__stack_top"] == spec["ram"][0] + spec["ram"][1]
    assert syms["__heap_start"] <= syms["__stack_limit"]


@pytest.mark.parametrize("board, define, error", [
    ("nucleo_f746zg", "HELLO_BIG_FLASH=1100000", "FLASH"),   # > 1 MB
    ("disco_f469ni", "HELLO_BIG_FLASH=2200000", "FLASH"),    # > 2 MB
    ("nucleo_f746zg", "HELLO_BIG_RAM=330000", "RAM"),        # > 320 KB
    ("disco_f469ni", "HELLO_BIG_RAM=330000", "RAM"),
    ("disco_f469ni", "HELLO_BIG_CCM=70000", "CCMRAM"),       # > 64 KB CCM
])
@pytest.mark.toolchain
def test_oversized_images_do_not_link(toolchain, tmp_path, board, define, error):
    with pytest.raises(qemu.FirmwareBuildError) as ei:
        build_hello(board, tmp_path, defines=[define])
    assert error in str(ei.value) + ei.value.output


@pytest.mark.parametrize("board, define, region", [
    ("nucleo_f746zg", "HELLO_BIG_RAM=290000", "ram"),        # fits beside the 16 KB stack
    ("disco_f469ni", "HELLO_BIG_CCM=60000", "ccm"),          # lands in the 64 KB CCM
    ("nucleo_f746zg", "HELLO_BIG_CCM=60000", "ram"),         # no CCM on the F7: plain SRAM
])
@pytest.mark.toolchain
def test_large_buffers_land_where_expected(toolchain, tmp_path, board, define, region):
    elf = build_hello(board, tmp_path, defines=[define])
    syms = symbols(elf)
    name = "big_ram" if "RAM" in define else "big_ccm"
    assert in_region(syms[name], int(define.split("=")[1]), STM32[board][region])


# ------------------------------------------------------------------------ vector table --

@pytest.mark.toolchain
@pytest.mark.parametrize("board", list(STM32))
def test_vector_table(protocol_elves, tmp_path, board):
    spec = STM32[board]
    elf = protocol_elves[board]
    syms = symbols(elf)
    assert syms["__vectors_start"] == spec["flash"][0]          # boot fetches from here
    assert syms["__vectors_start"] % 512 == 0                   # VTOR alignment for <=128 vectors
    raw = tmp_path / "vectors.bin"
    subprocess.run([_tool("objcopy"), "-O", "binary", "--only-section=.vectors", str(elf), str(raw)],
                   check=True)
    data = raw.read_bytes()
    assert len(data) == 4 * (16 + spec["irqs"])                 # core + device vectors
    words = struct.unpack(f"<{len(data) // 4}I", data)
    assert words[0] == spec["ram"][0] + spec["ram"][1] == syms["__stack_top"]  # initial MSP
    assert words[1] == syms["Reset_Handler"] | 1                # Thumb bit set
    for core in (2, 3, 4, 5, 6):                                # NMI .. UsageFault
        assert words[core] == syms["board_fault_entry"] | 1
    irq = words[16:]
    assert irq[spec["usart3_irq"]] == syms["usart3_irq"] | 1
    assert irq[spec["tim6_irq"]] == syms["tim6_irq"] | 1
    others = [v for i, v in enumerate(irq) if i not in (spec["usart3_irq"], spec["tim6_irq"])]
    assert set(others) == {syms["board_fault_entry"] | 1}
    # Every vector points into flash.
    assert all(in_region(v & ~1, 2, spec["flash"]) for v in words[1:] if v)


@pytest.mark.toolchain
@pytest.mark.parametrize("board", list(STM32))
def test_fpu_and_cpu_attributes(protocol_elves, board):
    """Hard-float ABI with the board's FPU: FPv5 single precision (M7) / FPv4-SP (M4)."""
    out = subprocess.run([_tool("readelf"), "-A", str(protocol_elves[board])], capture_output=True,
                         text=True, check=True).stdout
    assert "Tag_CPU_arch: v7E-M" in out and "Tag_ABI_VFP_args: VFP registers" in out
    assert "Tag_ABI_HardFP_use: SP only" in out
    fp = "FPv5" if STM32[board]["cpu"] == "Cortex-M7" else "VFPv4-D16"
    assert f"Tag_FP_arch: {fp}" in out


# ------------------------------------------------------------------------- clock plan --

CLOCK_PROBE = r"""
#include <stdio.h>
#include "clock_config.h"
int main(void) {
    printf("{\"hse\": %u, \"hsi\": %u, \"m_hse\": %u, \"m_hsi\": %u, \"n\": %u, \"p\": %u, \"q\": %u,"
           " \"sysclk\": %u, \"hclk\": %u, \"pclk1\": %u, \"pclk2\": %u, \"timclk1\": %u,"
           " \"apb1_div\": %u, \"apb2_div\": %u, \"ws\": %u, \"brr\": %u, \"baud\": %u,"
           " \"tim6_psc\": %u, \"tim6_arr\": %u,"
           " \"pllcfgr_hse\": %u, \"pllcfgr_hsi\": %u, \"cfgr_presc\": %u}\n",
           CLK_HSE_HZ, CLK_HSI_HZ, CLK_PLL_M_HSE, CLK_PLL_M_HSI, CLK_PLL_N, CLK_PLL_P, CLK_PLL_Q,
           CLK_SYSCLK_HZ, CLK_HCLK_HZ, CLK_PCLK1_HZ, CLK_PCLK2_HZ, CLK_TIMCLK1_HZ,
           CLK_APB1_DIV, CLK_APB2_DIV, CLK_FLASH_WS, CLK_USART3_BRR, CLK_CONSOLE_BAUD,
           CLK_TIM6_PSC, CLK_TIM6_ARR,
           clk_pllcfgr(0x24003010u, CLK_PLL_M_HSE, CLK_PLL_N, CLK_PLL_P, CLK_PLL_Q, 1),
           clk_pllcfgr(0x24003010u, CLK_PLL_M_HSI, CLK_PLL_N, CLK_PLL_P, CLK_PLL_Q, 0),
           clk_cfgr_prescalers());
    return 0;
}
"""


@pytest.fixture(scope="module", params=list(STM32))
def clock(request, tmp_path_factory):
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        pytest.skip("no host C compiler to compile clock_config.h")
    board = request.param
    d = tmp_path_factory.mktemp(f"clk_{board}")
    (d / "probe.c").write_text(CLOCK_PROBE)
    exe = d / "probe"
    subprocess.run([cc, "-std=c11", "-Wall", "-Werror", f"-I{ROOT / 'boards' / board}",
                    str(d / "probe.c"), "-o", str(exe)], check=True)
    return board, json.loads(subprocess.run([str(exe)], capture_output=True, text=True,
                                            check=True).stdout)


def test_clock_reaches_target_frequency(clock):
    board, c = clock
    spec = STM32[board]
    assert c["hse"] == spec["hse"] and c["hsi"] == 16_000_000
    for src, m in (("hse", c["m_hse"]), ("hsi", c["m_hsi"])):
        assert c[src] // m * c["n"] // c["p"] == spec["sysclk"], src  # same SYSCLK from both
    assert c["sysclk"] == c["hclk"] == spec["sysclk"]


def test_pll_within_manual_ranges(clock):
    _, c = clock
    for src, m in (("hse", c["m_hse"]), ("hsi", c["m_hsi"])):
        vco_in = c[src] / m
        assert 2 <= m <= 63
        assert 0.95e6 <= vco_in <= 2.1e6 and vco_in == 2e6   # 2 MHz: the manuals' advice
        assert 50 <= c["n"] <= 432
        assert 100e6 <= vco_in * c["n"] <= 432e6
    assert c["p"] in (2, 4, 6, 8)
    assert 2 <= c["q"] <= 15 and 2e6 * c["n"] / c["q"] <= 48e6


def test_bus_clocks_within_limits(clock):
    board, c = clock
    spec = STM32[board]
    assert c["pclk1"] == c["hclk"] // c["apb1_div"] <= spec["max_pclk1"]
    assert c["pclk2"] == c["hclk"] // c["apb2_div"] <= spec["max_pclk2"]
    # Timers on APB1 run at twice PCLK1 when the APB1 prescaler is not 1.
    assert c["timclk1"] == (2 if c["apb1_div"] > 1 else 1) * c["pclk1"]


def test_flash_wait_states_match_manual_table(clock):
    board, c = clock
    limits = STM32[board]["ws_limits_mhz"]
    required = next(ws for ws, top in enumerate(limits) if c["hclk"] <= top * 1_000_000)
    assert c["ws"] == required == {"nucleo_f746zg": 7, "disco_f469ni": 5}[board]


def test_register_encodings(clock):
    """RCC_PLLCFGR: PLLM [5:0], PLLN [14:6], PLLP [17:16] (00 = /2), PLLSRC bit 22 (1 = HSE),
    PLLQ [27:24], other bits (PLLR on the F469, reserved on the F746) kept from the reset value.
    RCC_CFGR: HPRE [7:4] 0 (= /1), PPRE1 [12:10], PPRE2 [15:13], 100 = /2, 101 = /4."""
    _, c = clock
    for key, m, hse in (("pllcfgr_hse", c["m_hse"], 1), ("pllcfgr_hsi", c["m_hsi"], 0)):
        v = c[key]
        assert v & 0x3F == m
        assert (v >> 6) & 0x1FF == c["n"]
        assert (v >> 16) & 3 == c["p"] // 2 - 1
        assert (v >> 22) & 1 == hse
        assert (v >> 24) & 0xF == c["q"]
        fields = 0x3F | 0x1FF << 6 | 3 << 16 | 1 << 22 | 0xF << 24
        assert v & ~fields & 0xFFFFFFFF == PLLCFGR_RESET & ~fields & 0xFFFFFFFF
    ppre = {1: 0, 2: 0b100, 4: 0b101, 8: 0b110, 16: 0b111}
    assert (c["cfgr_presc"] >> 4) & 0xF == 0
    assert (c["cfgr_presc"] >> 10) & 7 == ppre[c["apb1_div"]]
    assert (c["cfgr_presc"] >> 13) & 7 == ppre[c["apb2_div"]]


def test_console_baud_rate(clock):
    """16x oversampling: baud = f_pclk1 / BRR (on the F4 BRR is mantissa.fraction/16, which is
    the same number). The host side expects 115200; a few tenths of a percent is fine for UARTs."""
    board, c = clock
    actual = c["pclk1"] / c["brr"]
    assert c["baud"] == 115200 and abs(actual / 115200 - 1) < 0.002
    if STM32[board]["usart_brr_frac"]:
        mantissa, fraction = c["brr"] >> 4, c["brr"] & 0xF
        assert (mantissa, fraction) == (24, 7)  # 45 MHz / (16 * 115200) = 24.41 -> 24 + 7/16


def test_tick_extension_timer_period(clock):
    """TIM6 fires once a second, well inside the 32-bit cycle counter's wrap period."""
    _, c = clock
    period = (c["tim6_psc"] + 1) * (c["tim6_arr"] + 1) / c["timclk1"]
    assert period == 1.0 and period < 2**32 / c["sysclk"]
    assert c["tim6_psc"] <= 0xFFFF and c["tim6_arr"] <= 0xFFFF


# ------------------------------------------------------- reset handler and HSE detection --

@pytest.mark.toolchain
@pytest.mark.parametrize("board", list(STM32) + ["qemu_m7", "qemu_m4"])
def test_reset_handler_loads_the_stack_pointer(protocol_elves, board):
    """A debugger's `load; continue` starts at the ELF entry with whatever SP the core had:
    Reset_Handler must set MSP to __stack_top itself, before any push."""
    elf = protocol_elves[board]
    syms = symbols(elf)
    head = subprocess.run([_tool("readelf"), "-h", str(elf)], capture_output=True, text=True, check=True).stdout
    entry = int(next(ln for ln in head.splitlines() if "Entry point address" in ln).split()[-1], 16)
    assert entry == syms["Reset_Handler"] | 1
    dis = subprocess.run([_tool("objdump"), "-d", "--disassemble=Reset_Handler", str(elf)], capture_output=True,
                         text=True, check=True).stdout
    insns = [ln.split("\t")[2:] for ln in dis.splitlines() if ln.startswith(" ") and ln.count("\t") >= 2]
    ops = [(i[0].strip(), i[1].split("@")[0].strip() if len(i) > 1 else "") for i in insns]
    assert ops[0][0] == "movw" and ops[1][0] == "movt" and ops[2] == ("msr", "MSP, r0"), ops
    lo = int(ops[0][1].split("#")[1])
    hi = int(ops[1][1].split("#")[1])
    assert ops[0][1].startswith("r0,") and ops[1][1].startswith("r0,")
    assert (hi << 16) | lo == syms["__stack_top"] == STM32.get(board, {"ram": (0x2000_0000, 320 * KB)})["ram"][0] \
        + STM32.get(board, {"ram": (0x2000_0000, 320 * KB)})["ram"][1]


HSE_PROBE = r"""
#include <stdio.h>
#include <stdlib.h>
#include "clock_config.h"
int main(int argc, char **argv) {
    if (argv[1][0] == 'p') {
        struct clk_plan p = clk_plan_for((uint32_t)strtoul(argv[2], 0, 10));
        printf("{\"m\": %u, \"n\": %u, \"p\": %u, \"q\": %u, \"sysclk\": %u, \"vco_in\": %u, \"vco\": %u,"
               " \"pll48\": %u, \"ok\": %d, \"pllcfgr\": %u}\n", p.m, p.n, p.p, p.q, p.sysclk_hz, p.vco_in_hz,
               p.vco_hz, p.pll48_hz, p.ok, clk_pllcfgr(0x24003010u, p.m, p.n, p.p, p.q, 1));
    } else {
        uint32_t hz = clk_hse_from_capture((uint32_t)strtoul(argv[2], 0, 10), CLK_MEASURE_INTERVALS, CLK_HSI_HZ);
        printf("{\"measured\": %u, \"crystal\": %u, \"rtcpre\": %u, \"edges\": %u, \"intervals\": %u}\n", hz,
               clk_classify_hse(hz), CLK_MEASURE_RTCPRE, CLK_MEASURE_EDGES, CLK_MEASURE_INTERVALS);
    }
    return 0;
}
"""


@pytest.fixture(scope="module")
def hse_probe(tmp_path_factory):
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        pytest.skip("no host C compiler to compile clock_config.h")
    d = tmp_path_factory.mktemp("hse")
    (d / "probe.c").write_text(HSE_PROBE)
    subprocess.run([cc, "-std=c11", "-Wall", "-Werror", f"-I{ROOT / 'boards' / 'disco_f469ni'}", str(d / "probe.c"),
                    "-o", str(d / "probe")], check=True)

    def run(*args):
        return json.loads(subprocess.run([str(d / "probe"), *map(str, args)], capture_output=True, text=True,
                                         check=True).stdout)
    return run


@pytest.mark.parametrize("src_hz,m,n", [(8_000_000, 4, 180), (25_000_000, 25, 360), (16_000_000, 8, 180)])
def test_disco_pll_plan_for_8_and_25_mhz(hse_probe, src_hz, m, n):
    """Revision A of the 32F469IDISCOVERY has a 25 MHz crystal: the same 180 MHz from it, with
    every value inside RM0386's ranges (VCO input 0.95-2.1 MHz, N 50-432, VCO 100-432 MHz)."""
    p = hse_probe("plan", src_hz)
    assert (p["m"], p["n"], p["p"], p["q"]) == (m, n, 2, 8) and p["ok"] == 1
    assert p["sysclk"] == src_hz // m * n // 2 == 180_000_000
    assert 0.95e6 <= p["vco_in"] <= 2.1e6 and 100e6 <= p["vco"] <= 432e6 and p["pll48"] <= 48e6
    assert p["pllcfgr"] & 0x3F == m and (p["pllcfgr"] >> 6) & 0x1FF == n and (p["pllcfgr"] >> 22) & 1 == 1


@pytest.mark.parametrize("src_hz", [0, 7_500_000, 130_000_000])
def test_disco_no_plan_for_impossible_sources(hse_probe, src_hz):
    assert hse_probe("plan", src_hz)["ok"] == 0


@pytest.mark.parametrize("crystal", [8_000_000, 25_000_000])
@pytest.mark.parametrize("hsi_error", [-0.04, -0.01, 0.0, 0.01, 0.04])
def test_disco_hse_measured_against_hsi(hse_probe, crystal, hsi_error):
    """What TIM11 counts: HSI (its real frequency off by hsi_error) ticks over 8 intervals of 8
    edges of HSE / 31. The estimate names the right crystal across HSI's tolerance."""
    p = hse_probe("measure", 1)
    edges_per_interval = p["edges"] * p["rtcpre"]  # HSE cycles per captured interval
    ticks = round(p["intervals"] * edges_per_interval * 16e6 * (1 + hsi_error) / crystal)
    m = hse_probe("measure", ticks)
    assert m["crystal"] == crystal
    assert abs(m["measured"] * (1 + hsi_error) / crystal - 1) < 0.01  # only the tick rounding left


@pytest.mark.parametrize("other", [12_000_000, 16_000_000, 4_000_000])
def test_disco_other_hse_frequencies_fall_back_to_hsi(hse_probe, other):
    ticks = round(8 * 8 * 31 * 16e6 / other)
    assert hse_probe("measure", ticks)["crystal"] == 0
