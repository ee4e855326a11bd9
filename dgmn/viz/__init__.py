"""Drawing helpers for DGMN results: sampled nodes (paper Fig. 4), training and validation
curves (Fig. 5), label maps and prediction panels (with a class legend).

Pure helpers: they take numpy arrays (or a DGMN module for :func:`sampled_nodes`) and draw on
matplotlib ``Axes`` / build ``matplotlib.figure.Figure`` objects without pyplot, so they work in
any backend and in threads. matplotlib is imported lazily (it is an optional dependency of the
library); :func:`colorize` needs numpy only. Dataset-specific things (the Cityscapes palette,
file layouts) are the caller's business.
"""

from dgmn.viz.colorize import colorize
from dgmn.viz.curves import Panel, curves_figure, draw_curves
from dgmn.viz.panels import prediction_figure, prediction_panel
from dgmn.viz.sampling import draw_sampling, feature_to_image, sampling_figure
from dgmn.viz.walks import sampled_nodes

__all__ = [
    "Panel",
    "colorize",
    "curves_figure",
    "draw_curves",
    "draw_sampling",
    "feature_to_image",
    "prediction_figure",
    "prediction_panel",
    "sampled_nodes",
    "sampling_figure",
]
