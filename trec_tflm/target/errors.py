"""The errors of deploying a model as firmware (both derive from trec_tflm.errors.TrecTflmError).

They live apart from the modules that raise them so that every module of trec_tflm.target (the
board table, the resolver, the memory budget, flashing, generation) can raise them without
importing the command that catches them.
"""

from __future__ import annotations

from trec_tflm.errors import TrecTflmError


class DeployError(TrecTflmError, RuntimeError):
    """Something the user can fix: the message says what and how. ``exit_code``: 2 for bad
    input, 1 when a build, the memory budget or flashing failed."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code


class FirmwareError(TrecTflmError, RuntimeError):
    """A firmware project could not be generated or built."""
