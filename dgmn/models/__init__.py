"""Models: torchvision ResNet backbones, the Dilated FCN, Mask R-CNN with inserted modules.

Use :func:`build_model` with a plain mapping, e.g.
``build_model({"name": "dilated_fcn", "backbone": "resnet_tiny", "context": "dgmn"})``.
"""

from dgmn.models.backbones import BACKBONES, BackboneWeightsError, build_resnet
from dgmn.models.detection import MASK_RCNN_PRESETS, build_mask_rcnn
from dgmn.models.insertion import ALIASES, INSERTION_POINTS, insert_modules
from dgmn.models.registry import MODELS, build_model
from dgmn.models.segmentation import DilatedFCN

__all__ = [
    "ALIASES",
    "BACKBONES",
    "INSERTION_POINTS",
    "MASK_RCNN_PRESETS",
    "MODELS",
    "BackboneWeightsError",
    "DilatedFCN",
    "build_mask_rcnn",
    "build_model",
    "build_resnet",
    "insert_modules",
]
