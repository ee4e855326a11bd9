"""Optimiser and learning-rate schedules of the paper, from torch's own schedulers.

- ``poly`` (Cityscapes, supplementary A.2.2): ``lr = base · (1 - t/T)^power``;
- ``step`` (COCO 1x, A.2.3): ×``lr_gamma`` at each of ``lr_steps``;
- both with an optional constant warm-up at ``base · warmup_factor`` for ``warmup_iters``.
"""

from __future__ import annotations

from torch import nn, optim
from torch.optim.lr_scheduler import (
    ChainedScheduler,
    ConstantLR,
    LRScheduler,
    MultiStepLR,
    PolynomialLR,
)

from pipeline.config.schema import ScheduleSettings


def build_optimizer(model: nn.Module, schedule: ScheduleSettings) -> optim.SGD:
    """SGD with the paper's momentum and weight decay over the trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    return optim.SGD(params, lr=schedule.lr, momentum=schedule.momentum,
                     weight_decay=schedule.weight_decay)


def build_scheduler(optimizer: optim.Optimizer, schedule: ScheduleSettings) -> LRScheduler:
    """The per-iteration LR scheduler (call ``step()`` once per iteration)."""
    if schedule.policy == "poly":
        main: LRScheduler = PolynomialLR(optimizer, total_iters=schedule.iterations,
                                         power=schedule.power)
    else:
        main = MultiStepLR(optimizer, milestones=list(schedule.lr_steps),
                           gamma=schedule.lr_gamma)
    if schedule.warmup_iters == 0:
        return main
    warmup = ConstantLR(optimizer, factor=schedule.warmup_factor,
                        total_iters=schedule.warmup_iters)
    return ChainedScheduler([warmup, main], optimizer=optimizer)
