"""Writers of the embedded synthetic datasets in the official Cityscapes and COCO layouts.

The rule (classes, textures, the long-range cue) lives in :mod:`dgmn.data.synthetic`; these
modules sample scenes from a seed and write the files. ``pipeline.data.fetch`` calls them for the
``synthetic_cityscapes`` and ``synthetic_coco`` datasets.
"""

from pipeline.data.synthetic.cityscapes import SyntheticCityscapesConfig, generate_cityscapes
from pipeline.data.synthetic.coco import SyntheticCocoConfig, generate_coco

__all__ = [
    "SyntheticCityscapesConfig",
    "SyntheticCocoConfig",
    "generate_cityscapes",
    "generate_coco",
]
