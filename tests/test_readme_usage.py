"""The README's library snippet runs as written (small sizes)."""

import torch

from dgmn.models import build_model
from dgmn.nn import DGMN


def test_readme_library_snippet():
    block = DGMN(32, rates=(1, 6, 12, 24, 36), groups=4)
    y = block(torch.randn(2, 32, 9, 11))
    assert y.shape == (2, 32, 9, 11)
    fcn = build_model({"name": "dilated_fcn", "backbone": "resnet_tiny", "num_classes": 19,
                       "context": "dgmn", "context_kwargs": {"rates": [1, 6, 12, 24, 36]}})
    assert fcn(torch.randn(1, 3, 33, 47)).shape == (1, 19, 33, 47)
    maskrcnn = build_model({"name": "mask_rcnn", "backbone": "resnet_tiny", "insert": "dgmn_c5"})
    assert len(maskrcnn.inserted_modules) == 1  # resnet_tiny's res5 has one block
