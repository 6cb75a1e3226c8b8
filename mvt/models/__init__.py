"""Model families. Importing this package registers every family with ``mvt.zoo``."""

from importlib import import_module

FAMILIES = ("mvit", "vivit", "hvt", "mmvit")

for _name in FAMILIES:
    try:
        import_module(f"{__name__}.{_name}")
    except ModuleNotFoundError as _e:  # a family not written yet; never hides errors inside a family
        if _e.name != f"{__name__}.{_name}":
            raise
