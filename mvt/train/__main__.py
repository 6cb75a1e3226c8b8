"""``python -m mvt.train ...`` (see :mod:`mvt.train.cli`)."""

from .cli import main

raise SystemExit(main())
