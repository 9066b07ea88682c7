"""``python -m mrvae.cli``: the same as the ``mrvae`` command."""

from . import main

raise SystemExit(main())
