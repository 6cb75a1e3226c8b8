"""Model families, one file each. Importing this package registers every family with ``mvt.zoo``.

What a family provides is written down once in :mod:`mvt.models.contract`; ``docs/adding-a-model.md`` lists the
steps that add one (a new file here and one import line below). The imports are plain ``from . import``
lines, not computed names, so the layering test (``tests/test_imports.py``) sees every edge.
"""

from . import mvit  # noqa: I001  (registration order: mmvit builds on mvit's towers)
from . import vivit
from . import hvt
from . import mmvit

FAMILIES = ("mvit", "vivit", "hvt", "mmvit")
"""The family modules, in registration order (the imports above)."""

__all__ = ["FAMILIES", "hvt", "mmvit", "mvit", "vivit"]
