"""LR schedules and resumable batches."""

from __future__ import annotations

import pytest
import torch

from pipeline.config import load_config
from pipeline.training.batches import IterationBatchSampler, global_batch
from pipeline.training.schedules import build_optimizer, build_scheduler


def lrs(overrides, steps):
    cfg = load_config(overrides)
    model = torch.nn.Linear(2, 2)
    optimizer = build_optimizer(model, cfg.schedule)
    scheduler = build_scheduler(optimizer, cfg.schedule)
    out = []
    for _ in range(steps):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return cfg.schedule, out


def test_poly_schedule_follows_the_formula():
    schedule, got = lrs(["experiment=table1/dgmn_da", "profile=paper",
                         "schedule.iterations=50"], 50)
    want = [schedule.lr * (1 - t / 50) ** 0.9 for t in range(50)]
    assert got == pytest.approx(want, rel=1e-6)


def test_coco_1x_has_constant_warmup_then_steps():
    _, got = lrs(["experiment=table2/dgmn_c5", "profile=paper", "schedule.iterations=30",
                  "schedule.warmup_iters=5", "schedule.lr_steps=[10,20]"], 30)
    assert got[:5] == pytest.approx([0.02 * 0.3] * 5)
    assert got[5:10] == pytest.approx([0.02] * 5)
    assert got[10:20] == pytest.approx([0.002] * 10)
    assert got[20:] == pytest.approx([0.0002] * 10)


def test_batches_cover_each_epoch_once_and_depend_only_on_the_iteration():
    n, batch = 10, 4
    stream = [i for t in range(5) for i in global_batch(n, batch, seed=3, iteration=t)]
    assert sorted(stream[:10]) == list(range(10)) and sorted(stream[10:20]) == list(range(10))
    assert global_batch(n, batch, 3, 7) == global_batch(n, batch, 3, 7)
    assert global_batch(n, batch, 3, 7) != global_batch(n, batch, 4, 7)


def test_ranks_split_the_global_batch_and_resume_mid_run():
    full = list(IterationBatchSampler(13, 4, seed=1, start=0, stop=6))
    resumed = list(IterationBatchSampler(13, 4, seed=1, start=3, stop=6))
    assert resumed == full[3:]
    for t in range(6):
        parts = [next(iter(IterationBatchSampler(13, 4, 1, t, t + 1, rank, 2)))
                 for rank in (0, 1)]
        assert [k for part in parts for k in part] == full[t]
    with pytest.raises(ValueError, match="world_size"):
        IterationBatchSampler(13, 3, 1, 0, 1, 0, 2)
