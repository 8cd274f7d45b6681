"""``python -m trec_tflm``: the same as the ``trec-tflm`` command."""

from trec_tflm.cli import console_main

console_main()
