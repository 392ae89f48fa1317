"""Extraction, one concern per module: a dataset on disk -> a per-site feature table.

- :mod:`~moa_features.extraction.worker`: what a worker does for one chunk of sites (read,
  measure, thumbnail; failures become error records);
- :mod:`~moa_features.extraction.chunks`: the store of finished chunks (``NAME.parts/``) and
  the fingerprints that decide which chunks a resumed run may keep;
- :mod:`~moa_features.extraction.runners`: the chunks run on joblib processes or a Dask cluster;
- :mod:`~moa_features.extraction.checks`: options, channels and image headers checked before
  any work;
- :mod:`~moa_features.extraction.annotation`: the treatment -> MoA table of a run;
- :mod:`~moa_features.extraction.writer`: the finished chunks streamed into the final table,
  errors table, thumbnail array and objects table;
- :mod:`~moa_features.extraction.core`: :func:`~moa_features.extraction.core.extract`, the job;
- :mod:`~moa_features.extraction.cli`: the command line (``build_parser``, ``main``).

``python -m moa_features.extract`` is the program and :mod:`moa_features.extract` the public
face that re-exports the names callers use.
"""
