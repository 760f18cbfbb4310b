"""``python -m tradeloom``: the ``tradeloom`` command."""

from tradeloom.cli import main

raise SystemExit(main())
