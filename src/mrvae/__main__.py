"""``python -m mrvae``: the same as the ``mrvae`` command."""

from .cli import main

raise SystemExit(main())
