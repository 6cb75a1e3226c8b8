"""Documents an analysis leaves behind: one HTML page shell, ``report.html``, ``report.json`` and the export.
May import: mvt, viz, lens.core, lens.explain, lens.render."""
