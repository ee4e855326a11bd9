"""Model name → builder registry: ``build_model({"name": ..., **arguments})``.

The pipeline composes a plain mapping from its Hydra config and calls :func:`build_model`; every
other key is an argument of the builder. Examples::

    build_model({"name": "dilated_fcn", "backbone": "resnet_tiny", "num_classes": 19,
                 "context": "dgmn", "context_kwargs": {"rates": [1, 6], "groups": 4}})
    build_model({"name": "mask_rcnn", "backbone": "resnet50", "num_classes": 81,
                 "insert": {"module": "dgmn", "at": "c5", "kwargs": {"rates": [1, 4, 8, 12]}}})
    build_model("mask_rcnn", backbone="resnet_tiny", insert="dgmn_c5", min_size=128)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import nn

from dgmn.errors import DgmnError
from dgmn.models.detection import build_mask_rcnn
from dgmn.models.segmentation import DilatedFCN

__all__ = ["MODELS", "ModelConfigError", "build_model"]


class ModelConfigError(DgmnError, ValueError):
    """A model config that cannot be built: unknown name, argument, backbone, context module or
    insertion point, or a value a module rejects. The message names the key and the value."""

#: model name → builder (a class or a function returning an ``nn.Module``).
MODELS: dict[str, Callable[..., nn.Module]] = {
    "dilated_fcn": DilatedFCN,
    "mask_rcnn": build_mask_rcnn,
}


def _plain(value: Any) -> Any:
    """Recursively turn mappings into dicts and lists (e.g. OmegaConf containers) into lists."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes | tuple):
        return [_plain(item) for item in value]
    return value


def build_model(cfg: Mapping[str, Any] | str, /, **overrides: Any) -> nn.Module:
    """Build a model from ``{"name": <key of MODELS>, **arguments}`` (or a name and kwargs).

    Raises :class:`ModelConfigError` (a ``ValueError``) naming the key and the value for an
    unknown model name or argument, and for what the builders reject (unknown backbones,
    context modules and insertion points, values a module cannot take).
    """
    if isinstance(cfg, str):
        cfg = {"name": cfg}
    if not isinstance(cfg, Mapping):
        raise ModelConfigError(f"model config must be a mapping with a 'name' key, got {cfg!r}")
    arguments = {**_plain(cfg), **_plain(overrides)}
    name = arguments.pop("name", None)
    if name not in MODELS:
        raise ModelConfigError(f"unknown model name={name!r}; known: {', '.join(MODELS)}")
    builder = MODELS[name]
    parameters = inspect.signature(builder).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        unknown = sorted(set(arguments) - set(parameters))
        if unknown:
            raise ModelConfigError(f"unknown argument(s) {unknown} for model name={name!r}; "
                                   f"accepted: {', '.join(parameters)}")
    try:
        return builder(**arguments)
    except DgmnError:
        raise  # already names its file or value (e.g. backbone weights that cannot be loaded)
    except (ValueError, TypeError) as exc:
        raise ModelConfigError(f"model name={name!r}: {exc}") from exc
