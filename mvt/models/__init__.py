"""Model families, one file each. Importing this package registers every family with ``mvt.zoo``.

What a family provides is written down once in :mod:`mvt.models.contract`; ``docs/adding-a-model.md`` lists the
steps that add one (a new file here and its name in :data:`FAMILIES`).
"""

from importlib import import_module

FAMILIES = ("mvit", "vivit", "hvt", "mmvit")
"""The family modules, imported (and so registered) in this order."""

for _name in FAMILIES:
    import_module(f"{__name__}.{_name}")
