"""The task seam: a task registered from outside ``pipeline/`` (a toy classification task with
its own dataset and model, all defined in this file) is validated by the config schema, trains
with Ray Train and is evaluated by the stages, unchanged."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import ray
import torch
from ray import cloudpickle
from torch import Tensor, nn
from torch.utils.data import Dataset

from pipeline.common.manifest import write_manifest
from pipeline.config import ConfigError, load_config
from pipeline.evaluate import evaluate
from pipeline.layout import Layout
from pipeline.tasks import catalog, registry
from pipeline.tasks.base import Task
from pipeline.train import train

TOY = ["experiment=table1/dgmn_da_dw_ds", "profile=smoke", "data.name=toy_squares",
       "data.task=toy", "data.source=real", "data.num_classes=2", "model.name=toy_net",
       "tracking.enabled=false", "schedule.iterations=4", "data.val_max_images=null"]


class Squares(Dataset):
    """``(3, 8, 8)`` images, label 1 where a bright square is present (from an ``.npz``)."""

    def __init__(self, file: Path) -> None:
        with np.load(file, allow_pickle=False) as data:
            self.images, self.labels = data["images"], data["labels"]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return torch.from_numpy(self.images[index]), torch.tensor(int(self.labels[index]))


class ToyTask(Task):
    metric = "accuracy"
    model_names = ("toy_net",)

    def train_dataset(self) -> Dataset:
        return Squares(self.data_root() / "train.npz")

    def make_val_dataset(self) -> Dataset:
        return Squares(self.data_root() / "val.npz")

    def build_model(self) -> nn.Module:
        torch.manual_seed(self.cfg.seed)
        return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, self.cfg.data.num_classes))

    def example_input(self) -> Tensor:
        return torch.randn(1, 3, 8, 8)

    def loss(self, model: nn.Module, batch: Any, device: torch.device
             ) -> tuple[Tensor, dict[str, float]]:
        images, labels = batch
        loss = nn.functional.cross_entropy(model(images.to(device)), labels.to(device))
        return loss, {"loss": float(loss.detach())}

    def _predictions(self, model: nn.Module, indices: list[int]) -> list[int]:
        dataset = self.val_dataset()
        with torch.no_grad():
            return [int(model(dataset[i][0].unsqueeze(0)).argmax()) for i in indices]

    def validate(self, model: nn.Module, device: torch.device) -> dict[str, Any]:
        indices = self.val_indices()
        labels = [int(self.val_dataset()[i][1]) for i in indices]
        return {"accuracy": _accuracy(self._predictions(model.cpu(), indices), labels)}

    def evaluate(self, model: nn.Module, out: Path) -> dict[str, Any]:
        indices = list(range(self.val_count()))
        predictions = self._predictions(model, indices)
        (out / "predictions.json").write_text(json.dumps(predictions))
        labels = [int(self.val_dataset()[i][1]) for i in indices]
        return {"accuracy": _accuracy(predictions, labels)}

    def evaluation_example(self) -> Tensor:
        return self.val_dataset()[0][0].unsqueeze(0)


def _accuracy(predictions: list[int], labels: list[int]) -> float:
    return 100.0 * sum(p == t for p, t in zip(predictions, labels, strict=True)) / len(labels)


def _squares(count: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.normal(0, 0.1, (count, 3, 8, 8)).astype(np.float32)
    labels = np.arange(count) % 2
    images[labels == 1, :, 2:6, 2:6] += 1.0
    return {"images": images, "labels": labels}


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """The toy task and dataset registered (for this test only), its data preprocessed under
    ``tmp_path``; returns the overrides of a toy run writing into ``tmp_path``."""
    monkeypatch.setitem(catalog.DATASETS, "toy_squares", catalog.DatasetEntry("toy"))
    monkeypatch.setitem(catalog.TASK_MODELS, "toy", ())  # both restored after the test
    monkeypatch.setitem(registry.TASKS, "toy", None)
    registry.register_task("toy", ToyTask)
    root = tmp_path / "processed" / "toy_squares"
    root.mkdir(parents=True)
    for split, count, seed in (("train", 8, 0), ("val", 6, 1)):
        np.savez(root / f"{split}.npz", **_squares(count, seed))
    write_manifest(root, {"dataset": "toy_squares"}, progress=False)
    # Ray workers get the driver's task class; this module is not importable there.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield [*TOY, f"paths.processed={tmp_path / 'processed'}", f"paths.runs={tmp_path / 'runs'}",
           f"paths.ray_storage={tmp_path / 'ray'}"]
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def test_an_unregistered_task_fails_at_start_up_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"data\.name='toy_squares'"):
        load_config(TOY)


@pytest.mark.slow
@pytest.mark.cluster
def test_a_task_registered_outside_the_pipeline_trains_and_evaluates(toy, tmp_path) -> None:
    cfg = load_config(toy)
    try:
        final = train(cfg, tmp_path)
    finally:
        ray.shutdown()
    layout = Layout.of(cfg, tmp_path)
    assert final["metric"] == "accuracy" and final["iteration"] == 4
    assert json.loads((layout.train_dir / "metrics.json").read_text())["accuracy"] == \
        final["accuracy"]
    assert final["params"] == 3 * 8 * 8 * 2 + 2

    metrics = evaluate(cfg, tmp_path)
    # The same weights on the same val images: evaluation agrees with the last validation.
    assert metrics["accuracy"] == final["accuracy"]
    assert metrics["task"] == "toy" and metrics["added_params_m"] == 0
    predictions = json.loads((layout.eval_dir / "predictions.json").read_text())
    assert len(predictions) == 6 and set(predictions) <= {0, 1}
