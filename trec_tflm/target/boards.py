"""The boards: one table of what the Python side knows about each (docs/BOARDS.md).

The build facts live in each board's ``boards/<name>/board.mk`` (compiler flags, sources, flash base,
OpenOCD board script, pyOCD target, QEMU machine) and its linker script (memory regions, read by
trec_tflm.target.memory). This table holds what the Python tools need without running make: the
core, the QEMU machine and twin, the memory sizes quoted in messages, and the flashing facts.
tests/test_boards_table.py checks it against the board.mk files and linker scripts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Optional

from trec_tflm import paths
from trec_tflm.target.errors import DeployError

KB = 1024


@dataclass(frozen=True)
class Board:
    name: str
    core: str                        # tflm.mk core target and -mcpu=cortex-<core>: "m4", "m7"
    qemu_machine: Optional[str]      # qemu-system-arm -M ...; None: a real board
    qemu_twin: str                   # the QEMU board with the same core (same TFLM build, same arena use)
    real_board: str                  # the board whose limits the linker script enforces
    flash_bytes: int
    ram_bytes: int
    ccm_bytes: int                   # 0: no separate CCM region
    tick_resolution: int = 1         # board_tick_resolution() on QEMU: instructions
    drive_label: Optional[str] = None      # ST-LINK mass-storage drive (drag-and-drop flashing)
    openocd_target: Optional[str] = None   # OpenOCD target script when the board script is not installed

    @property
    def is_qemu(self) -> bool:
        return self.qemu_machine is not None

    # the names trec_tflm.target.qemu's QemuBoard had
    @property
    def machine(self) -> Optional[str]:
        return self.qemu_machine

    @property
    def cpu(self) -> str:
        return f"cortex-{self.core}"


BOARDS: Mapping[str, Board] = {b.name: b for b in (
    Board("nucleo_f746zg", "m7", None, "qemu_m7", "NUCLEO_F746ZG", 1024 * KB, 320 * KB, 0,
          drive_label="NODE_F746ZG", openocd_target="target/stm32f7x.cfg"),
    Board("disco_f469ni", "m4", None, "qemu_m4", "DISCO_F469NI", 2048 * KB, 320 * KB, 64 * KB,
          drive_label="DIS_F469NI", openocd_target="target/stm32f4x.cfg"),
    Board("qemu_m7", "m7", "mps2-an500", "qemu_m7", "NUCLEO_F746ZG", 1024 * KB, 320 * KB, 0),
    Board("qemu_m4", "m4", "mps2-an386", "qemu_m4", "DISCO_F469NI", 2048 * KB, 320 * KB, 64 * KB),
)}

REAL_BOARDS = tuple(n for n, b in BOARDS.items() if not b.is_qemu)
QEMU_BOARDS = tuple(n for n, b in BOARDS.items() if b.is_qemu)
#: The QEMU board with the same core as each board.
QEMU_TWIN = {n: b.qemu_twin for n, b in BOARDS.items()}
#: The board commands emulate when none is given: Cortex-M7, the core of the NUCLEO-F746ZG.
DEFAULT_EMULATED_BOARD = "qemu_m7"
#: The QEMU board of each core (the kernel benchmarks run per core).
QEMU_BOARD_OF_CORE = {BOARDS[n].core: n for n in QEMU_BOARDS}


class UnknownBoardError(DeployError, ValueError):
    """A board name that is not in the table (or has no boards/<name>/board.mk); exit code 2."""


def board(name: str) -> Board:
    """The board's entry; UnknownBoardError naming the boards there are."""
    b = BOARDS.get(name)
    if b is None or not (paths.boards_dir() / name / "board.mk").is_file():
        raise UnknownBoardError(f"unknown board {name!r}; boards: {', '.join(BOARDS)}")
    return b


def check_board(name: str) -> str:
    """``name``, when it is a board (else UnknownBoardError, a DeployError)."""
    return board(name).name


def qemu_board(name: str) -> Board:
    """A QEMU board's entry; UnknownBoardError for any other name."""
    b = BOARDS.get(name)
    if b is None or not b.is_qemu:
        raise UnknownBoardError(f"unknown QEMU board {name!r}; QEMU boards: {', '.join(QEMU_BOARDS)}")
    return b


def board_mk_value(name: str, key: str) -> Optional[str]:
    """A ``KEY := value`` of ``boards/<name>/board.mk`` (its first word), None when absent."""
    m = re.search(rf"^{key}\s*:?=\s*(\S+)", (paths.boards_dir() / name / "board.mk").read_text(), re.M)
    return m.group(1) if m else None
