"""Tables 5 and 8: one experiment per paper row, the settings each row names, and every
experiment built and trained one step at smoke scale."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from dgmn.models import build_model
from dgmn.nn.ohem_loss import OhemCrossEntropy
from dgmn.paper import paper_rows
from pipeline.config import PipelineConfig, experiment_names, load_config

TABLES = {"table5": "table5_cityscapes_val_tricks", "table8": "table8_coco_val_backbones"}
NAMES = [n for n in experiment_names(include_aliases=True) if n.split("/")[0] in TABLES]
CITYSCAPES_RATES = [1, 6, 12, 24, 36]


@functools.cache
def _config(name: str, profile: str = "paper") -> PipelineConfig:
    return load_config([f"experiment={name}", f"profile={profile}"])


def _rows(table: str) -> dict[int, PipelineConfig]:
    configs = [_config(name) for name in NAMES]
    return {cfg.experiment.row: cfg for cfg in configs if cfg.experiment.table == table}


@pytest.mark.parametrize("table", TABLES.values())
def test_every_row_has_one_experiment(table: str) -> None:
    assert sorted(_rows(table)) == list(range(len(paper_rows(table))))


def test_table5_rows_switch_on_what_the_paper_lists() -> None:
    rows = _rows("table5_cityscapes_val_tricks")
    for index, paper in enumerate(paper_rows("table5_cityscapes_val_tricks")):
        cfg = rows[index]
        assert cfg.schedule.ohem is paper["ohem"]
        assert cfg.model["multi_grid"] == ([1, 2, 4] if paper["multigrid"] else None)
        kwargs = cfg.model["context_kwargs"]  # DA+DW on uniformly sampled nodes ("US")
        assert cfg.model["context"] == "dgmn" and kwargs["rates"] == CITYSCAPES_RATES
        assert kwargs["dynamic_affinity"] and kwargs["dynamic_filters"]
        assert not kwargs["dynamic_sampling"] and kwargs["groups"] == 4
    # multi-scale inference is evaluation only: the MS row is the multi-grid row's model
    assert rows[3].trained_as == rows[2].experiment.name == "table5/dgmn_ohem_multigrid"
    assert rows[3].model == rows[2].model and rows[2].trained_as == rows[2].experiment.name


def test_table8_rows_are_the_table4_models_evaluated_on_val() -> None:
    backbones = {"resnet101": "resnet101", "resnext101": "resnext101_32x8d"}
    rows = _rows("table8_coco_val_backbones")
    for index, paper in enumerate(paper_rows("table8_coco_val_backbones")):
        cfg = rows[index]
        assert cfg.trained_as.startswith("table4/") and cfg.data.val_split == "val"
        assert cfg.model == _config(cfg.trained_as).model
        assert cfg.model["backbone"] == backbones[paper["backbone"]]
        assert cfg.model["insert"] == paper["model"]  # maskrcnn | dgmn_c5


def _segmentation_step(cfg: PipelineConfig, model: nn.Module) -> torch.Tensor:
    images = torch.randn(2, 3, 48, 64)
    target = torch.randint(0, cfg.data.num_classes, (2, 48, 64))
    criterion = (OhemCrossEntropy(cfg.schedule.ohem_threshold, cfg.schedule.ohem_min_kept)
                 if cfg.schedule.ohem else nn.CrossEntropyLoss())
    return criterion(model(images), target)


def _detection_step(model: nn.Module) -> torch.Tensor:
    boxes = torch.tensor([[4.0, 6.0, 40.0, 30.0]])
    masks = torch.zeros(1, 48, 64, dtype=torch.uint8)
    masks[:, 6:30, 4:40] = 1
    losses = model([torch.rand(3, 48, 64)],
                   [{"boxes": boxes, "labels": torch.tensor([1]), "masks": masks}])
    return sum(losses.values())


@pytest.mark.parametrize("name", NAMES)
def test_smoke_profile_builds_and_trains_one_step(name: str) -> None:
    torch.manual_seed(0)
    cfg = _config(name, "smoke")
    if cfg.data.task == "segmentation":
        model = build_model(cfg.model).train()
        loss = _segmentation_step(cfg, model)
        if cfg.model["multi_grid"]:  # resnet_tiny's one layer4 block takes the first rate
            assert [b.conv2.dilation for b in model.backbone.layer4] == [(4, 4)]
        trained = model.context
    else:
        model = build_model(cfg.model, min_size=cfg.data.min_size,
                            max_size=cfg.data.max_size).train()
        loss = _detection_step(model)
        trained = model.backbone.body.layer4
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in trained.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
