"""The DVC pipeline stages (fetch, preprocess, train, tune, evaluate, report).

Each stage is a thin entry point (``python -m pipeline.<stage>``) over the :mod:`dgmn` library.
The library never imports this package.
"""
