"""The data stages: fetch a dataset in its official layout, preprocess it into the
training-ready tree and its manifest.

- :mod:`pipeline.data.stage`: the stage CLI, ``python -m pipeline.data fetch|preprocess <data>``;
- :mod:`pipeline.data.fetch`: download or generate, check, extract (``checksums.yaml``);
- :mod:`pipeline.data.preprocess`: check every file, map labels, write the manifest;
- :mod:`pipeline.data.synthetic`: the writers of the embedded synthetic datasets.

A new dataset: its config in ``conf/data/``, its entry in ``pipeline.tasks.catalog.DATASETS``,
a fetch branch (archives in ``checksums.yaml``) and a preprocess kind; see
``docs/architecture.md``.
"""
