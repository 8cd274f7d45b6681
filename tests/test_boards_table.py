"""trec_tflm.target.boards (the one board table) against the boards' own build files.

The table repeats what boards/<name>/board.mk and the linker scripts say (the core, the QEMU machine,
memory sizes, the ST-LINK drive); these tests read those files independently so the two cannot drift.
"""

from __future__ import annotations

import re

import pytest

from trec_tflm import paths
from trec_tflm.target import boards, memory, qemu


def _board_mk(name: str) -> str:
    return (paths.boards_dir() / name / "board.mk").read_text()


def test_every_board_directory_is_in_the_table_and_back():
    on_disk = {p.parent.name for p in paths.boards_dir().glob("*/board.mk")}
    assert on_disk == set(boards.BOARDS)
    assert set(boards.REAL_BOARDS) | set(boards.QEMU_BOARDS) == on_disk
    assert not set(boards.REAL_BOARDS) & set(boards.QEMU_BOARDS)


@pytest.mark.parametrize("name", sorted(boards.BOARDS))
def test_core_and_qemu_machine_match_board_mk(name):
    b = boards.BOARDS[name]
    mk = _board_mk(name)
    assert re.search(r"BOARD_CPU_FLAGS\s*:=.*-mcpu=cortex-(\w+)", mk).group(1) == b.core
    machine = re.search(r"^QEMU_MACHINE\s*:=\s*(\S+)", mk, re.M)
    assert (machine.group(1) if machine else None) == b.qemu_machine
    twin = boards.BOARDS[b.qemu_twin]
    assert twin.is_qemu and twin.core == b.core


@pytest.mark.parametrize("name", sorted(boards.BOARDS))
def test_memory_sizes_match_the_linker_script(name):
    b = boards.BOARDS[name]
    regions = memory.board_memory(name)
    assert regions["FLASH"][1] == b.flash_bytes
    assert regions["RAM"][1] == b.ram_bytes
    assert regions.get("CCMRAM", (0, 0))[1] == b.ccm_bytes


@pytest.mark.parametrize("name", boards.REAL_BOARDS)
def test_real_boards_flash_facts(name):
    b = boards.BOARDS[name]
    assert boards.board_mk_value(name, "BOARD_FLASH_SIZE") == str(b.flash_bytes)
    assert b.drive_label and b.drive_label in _board_mk(name)  # the comment names the drive
    assert b.openocd_target.startswith("target/stm32")


def test_qemu_stand_ins_have_their_real_boards_limits():
    for name in boards.QEMU_BOARDS:
        b = boards.BOARDS[name]
        real = next(r for r in boards.REAL_BOARDS if r.upper() == b.real_board)
        r = boards.BOARDS[real]
        assert (b.core, b.flash_bytes, b.ram_bytes, b.ccm_bytes) == (r.core, r.flash_bytes, r.ram_bytes, r.ccm_bytes)
        assert qemu.QEMU_BOARDS[name] is b


def test_unknown_board_names_the_boards():
    with pytest.raises(boards.UnknownBoardError, match="unknown board 'esp32'.*nucleo_f746zg") as ei:
        boards.board("esp32")
    assert isinstance(ei.value, ValueError) and ei.value.exit_code == 2
    with pytest.raises(ValueError, match="unknown QEMU board 'nucleo_f746zg'"):
        boards.qemu_board("nucleo_f746zg")
