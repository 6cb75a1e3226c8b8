"""How a result is displayed: the :class:`~lens.render.display.Display` a person picks, overlays and strips,
the synced timeline's sprites and markup, captions, one model's panel. May import: mvt, viz, lens.core,
lens.explain."""
