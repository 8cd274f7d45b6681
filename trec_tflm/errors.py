"""The one root of trec-tflm's errors.

Every error class of the package derives from :class:`TrecTflmError`, so ``except TrecTflmError`` catches
anything this package raises on purpose. Each class also keeps the built-in base its callers have always
caught (``ValueError`` for bad input, ``RuntimeError`` for a failed build or run, ``OSError`` for files and
ports, ``TimeoutError``), so existing ``except`` clauses keep working.

The command line (``trec_tflm.cli``) prints any of them as one line; it exits 2 for input the user can fix
(:class:`UserError`, ``ValueError``, ``OSError``) and 1 otherwise.
"""


class TrecTflmError(Exception):
    """Root of every error trec-tflm raises on purpose."""


class UserError(TrecTflmError):
    """Bad input or a missing prerequisite the user can fix: printed without a traceback, exit status 2."""
