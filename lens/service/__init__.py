"""Running models: the one run path (a model on a clip → output, volumes, timings), jobs that stream results
as models finish, and the :class:`~lens.service.service.Service` that owns every cache and thread. May
import: mvt, viz, lens.core, lens.explain, lens.render, lens.files."""
