"""``python -m tradeloom``: the ``tradeloom`` command."""

from tradeloom.cli import console_main

console_main()
