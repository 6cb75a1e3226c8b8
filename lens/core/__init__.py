"""The nouns of a request and what keeps them: the :class:`~lens.core.request.Request` and its result keys,
the records of an answer (volumes, model results and errors, analyses), caches, clips, files on disk, and
the owner of every background thread. May import: mvt, viz (pure arrays), nothing else of lens."""
