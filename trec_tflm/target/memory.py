"""What a linked firmware image uses of its board's memory: ``arm-none-eabi-size -A``, the linker
map and the board's linker script (:func:`elf_budget`, :class:`MemoryBudget`)."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Optional, Union

from trec_tflm import paths
from trec_tflm.target import boards
from trec_tflm.target.errors import DeployError
from trec_tflm.target.sources import DEFAULT_STACK

PathLike = Union[str, os.PathLike]


# ------------------------------------------------------------------------------------------------
# memory budget: arm-none-eabi-size -A + the linker map
# ------------------------------------------------------------------------------------------------
_NOT_LOADED = re.compile(r"^\.(debug|comment|ARM\.attributes|stab|gnu\.attributes|note)")
_FLASH_SECTIONS_ALSO = (".data",)   # in RAM, with its load image in flash


def parse_size_sysv(text: str) -> dict:
    """``arm-none-eabi-size -A`` (System V format) -> {section: (size, addr)} of loaded sections."""
    out = {}
    for ln in text.splitlines():
        parts = ln.split()
        if len(parts) == 3 and parts[0].startswith(".") and parts[1].isdigit() and parts[2].isdigit():
            if not _NOT_LOADED.match(parts[0]):
                out[parts[0]] = (int(parts[1]), int(parts[2]))
    if not out:
        raise DeployError("could not read the section sizes (arm-none-eabi-size -A printed no sections)", 1)
    return out


def parse_map(text: str) -> dict:
    """A GNU ld map -> {"regions": {name: (origin, length)}, "stack_size": int | None,
    "heap_min_size": int | None}."""
    regions = {}
    m = re.search(r"^Memory Configuration\s*\n\s*\nName\s+Origin\s+Length.*\n((?:.*\n)*?)\s*\n", text, re.M)
    if m:
        for ln in m.group(1).splitlines():
            parts = ln.split()
            if len(parts) >= 3 and parts[0] != "*default*":
                regions[parts[0]] = (int(parts[1], 16), int(parts[2], 16))
    res = {"regions": regions, "stack_size": None, "heap_min_size": None}
    for sym in ("stack_size", "heap_min_size"):
        s = re.search(rf"^\s+0x([0-9a-fA-F]+)\s+__{sym}\s*=", text, re.M)
        if s:
            res[sym] = int(s.group(1), 16)
    return res


def parse_linker_script_memory(text: str) -> dict:
    """MEMORY { NAME (attr) : ORIGIN = x, LENGTH = y } -> {name: (origin, length)}, and
    REGION_ALIAS targets."""
    def num(s: str) -> int:
        s = s.strip()
        mult = {"K": 1024, "M": 1024 * 1024}.get(s[-1:].upper(), 1)
        s = s[:-1] if mult > 1 else s
        return int(s, 0) * mult

    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    regions = {}
    for m in re.finditer(r"(\w+)\s*(?:\([^)]*\))?\s*:\s*ORIGIN\s*=\s*([0-9a-fA-FxX]+[KkMm]?)\s*,\s*"
                         r"LENGTH\s*=\s*([0-9a-fA-FxX]+[KkMm]?)", text):
        regions[m.group(1)] = (num(m.group(2)), num(m.group(3)))
    for m in re.finditer(r'REGION_ALIAS\(\s*"(\w+)"\s*,\s*(\w+)\s*\)', text):
        regions.setdefault(m.group(1), ("alias", m.group(2)))
    return regions


def board_memory(board: str) -> dict:
    """{"FLASH": (origin, bytes), "RAM": ..., optionally "CCMRAM"} from the board's linker script."""
    boards.check_board(board)
    ld = paths.boards_dir() / board / f"{board}.ld"
    regions = parse_linker_script_memory(ld.read_text())
    return {k: v for k, v in regions.items() if k in ("FLASH", "RAM", "CCMRAM") and v[0] != "alias"}


_OVERFLOW = re.compile(r"region [`'](\w+)' overflowed by (\d+) bytes")


def parse_link_overflow(text: str) -> list:
    """[(region, bytes over)] from a failed link's output (ld's "region `X' overflowed by N bytes",
    and the RAM ASSERT of boards/common/sections.ld with N unknown = -1)."""
    found = [(m.group(1), int(m.group(2))) for m in _OVERFLOW.finditer(text)]
    seen, out = set(), []
    for r in found:
        if r not in seen:
            seen.add(r)
            out.append(r)
    if not out and "RAM overflow: .data + .bss + HEAP_MIN_SIZE + STACK_SIZE" in text:
        out.append(("RAM", -1))
    return out


@dataclasses.dataclass
class RegionUse:
    region: str
    used: int
    size: int
    parts: dict

    @property
    def free(self) -> int:
        return self.size - self.used

    @property
    def fits(self) -> bool:
        return self.used <= self.size


@dataclasses.dataclass
class MemoryBudget:
    board: str
    regions: list           # RegionUse
    arena_size: Optional[int] = None

    @property
    def fits(self) -> bool:
        return all(r.fits for r in self.regions)

    def region(self, name: str) -> RegionUse:
        return next(r for r in self.regions if r.region == name)

    def summary(self) -> str:
        label = {"FLASH": "flash", "RAM": "RAM", "CCMRAM": "CCM"}
        lines = [f"memory on {self.board} (linked image; limits from boards/{self.board}/{self.board}.ld):"]
        for r in self.regions:
            pct = 100.0 * r.used / r.size if r.size else 0.0
            parts = " + ".join(f"{k} {v:,}" for k, v in r.parts.items() if v)
            state = f"free {r.free:,}" if r.fits else f"OVER BY {-r.free:,} BYTES"
            lines.append(f"  {label.get(r.region, r.region):<6}{r.used:>10,} of {r.size:>10,} B ({pct:5.1f} %)  "
                         f"{state}" + (f"   [{parts}]" if parts else ""))
        if self.arena_size:
            lines.append(f"  (RAM includes the tensor arena of {self.arena_size:,} B in .bss)")
        return "\n".join(lines)

    def failure(self) -> str:
        bad = [r for r in self.regions if not r.fits]
        return "; ".join(f"{r.region} needs {r.used:,} of {r.size:,} bytes: over by {-r.free:,}" for r in bad)


def memory_budget(sections: dict, regions: dict, *, board: str, stack_size: int, arena_size: Optional[int] = None,
                  ) -> MemoryBudget:
    """Flash / RAM / CCM use of a linked image: each loaded section counts in the region its
    address falls in (.data also in flash, its load image); RAM adds the main stack."""
    use = {name: {} for name in regions}

    def region_of(addr: int) -> Optional[str]:
        for name, (origin, length) in regions.items():
            if origin <= addr < origin + length:
                return name
        return None

    for sec, (size, addr) in sections.items():
        if size == 0:
            continue
        reg = region_of(addr)
        if reg is None:
            continue
        use[reg][sec] = use[reg].get(sec, 0) + size
        if sec in _FLASH_SECTIONS_ALSO and "FLASH" in use and reg != "FLASH":
            use["FLASH"][f"{sec} image"] = size
    if "RAM" in use:
        use["RAM"]["stack"] = int(stack_size)
    out = []
    for name in ("FLASH", "RAM", "CCMRAM"):
        if name in regions:
            parts = use[name]
            if name == "FLASH":
                code = sum(v for k, v in parts.items() if k != ".data image")
                parts = {"code+rodata": code, ".data image": parts.get(".data image", 0)}
            out.append(RegionUse(name, sum(parts.values()), regions[name][1], parts))
    return MemoryBudget(board, out, arena_size)


def elf_budget(elf: PathLike, board: str, *, arena_size: Optional[int] = None,
               stack_size: Optional[int] = None) -> MemoryBudget:
    """The budget of a linked ELF: ``arm-none-eabi-size -A``, the linker map beside it (regions,
    stack size), else the board's linker script."""
    elf = Path(elf)
    tool = shutil.which("arm-none-eabi-size")
    if tool is None:
        raise DeployError("arm-none-eabi-size is not installed (Debian: apt-get install gcc-arm-none-eabi "
                          "binutils-arm-none-eabi)", 1)
    proc = subprocess.run([tool, "-A", str(elf)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise DeployError(f"arm-none-eabi-size failed on {elf}: {proc.stderr.strip()}", 1)
    sections = parse_size_sysv(proc.stdout)
    regions = board_memory(board)
    mp = elf.with_suffix(".map")
    if mp.is_file():
        parsed = parse_map(mp.read_text(errors="replace"))
        regions = {k: v for k, v in parsed["regions"].items() if k in ("FLASH", "RAM", "CCMRAM")} or regions
        if stack_size is None:
            stack_size = parsed["stack_size"]
    return memory_budget(sections, regions, board=board, stack_size=stack_size or DEFAULT_STACK,
                         arena_size=arena_size)
