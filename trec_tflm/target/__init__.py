"""Boards: the board table, firmware projects, deploy, QEMU, the serial benchmark protocol."""
