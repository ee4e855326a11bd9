"""Arrays the report draws its figures from: de-normalised images and the sampled nodes of one
receiving pixel in the first DGMN module (Fig. 4)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from dgmn.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from dgmn.nn.dgmn import DGMN
from dgmn.viz.walks import sampled_nodes


def denormalise(image: Tensor) -> np.ndarray:
    """``(3, H, W)`` ImageNet-normalised image → ``(H, W, 3) uint8``."""
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    pixels = (image.float().cpu() * std + mean).clamp(0, 1) * 255
    return pixels.round().byte().permute(1, 2, 0).numpy()


def walks_figure(model: nn.Module, image: Tensor) -> dict[str, np.ndarray] | None:
    """Sampled nodes of the centre receiver in the first DGMN module of ``model`` on
    ``image`` ``(3, H, W)``; ``None`` when the model has no DGMN module."""
    module = next((m for m in model.modules() if isinstance(m, DGMN)), None)
    if module is None:
        return None
    captured: dict[str, Tensor] = {}
    handle = module.register_forward_hook(lambda m, args, out: captured.update(x=args[0]))
    with torch.no_grad():
        model(image.unsqueeze(0))
    handle.remove()
    height, width = captured["x"].shape[-2:]
    receiver = (height // 2, width // 2)
    positions, uniform = sampled_nodes(module, captured["x"], receiver)
    return {"image": denormalise(image), "stride": np.array(image.shape[-1] // width),
            "rates": np.array(module.rates), "kernel_size": np.array(module.kernel_size),
            "receiver": np.array(receiver), "positions": positions, "uniform": uniform}
