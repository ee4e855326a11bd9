"""The per-worker training loop run by Ray Train's ``TorchTrainer`` (one process per worker).

Resumes from ``ray.train.get_checkpoint()`` when Ray restarts the workers (``FailureConfig``)
or the run is started again under the same name; the batches of every iteration are a function
of (seed, iteration) (:mod:`pipeline.training.batches`), and optimiser, scheduler and RNG state
come back from the checkpoint, so a resumed CPU run ends where an uninterrupted one does.

In Ray Train's local mode (``scaling.num_workers: 0``: the loop runs in the stage process) Ray
keeps no checkpoints, so the loop writes them itself into the run directory
(``local_checkpoints``, :mod:`pipeline.training.local_checkpoints`) and resumes from the newest.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import ray.train
import ray.train.torch
import ray.util
import torch
from torch import nn

from pipeline.config.compose import from_dict
from pipeline.tracking import Tracker
from pipeline.training import local_checkpoints
from pipeline.training.batches import iteration_loader
from pipeline.training.progress import TrainingProgress
from pipeline.training.schedules import build_optimizer, build_scheduler
from pipeline.training.state import History, load_state, save_state, unwrap

#: Rank 0's events, one line each: in a Train worker the root logger's console handler (Ray's)
#: writes them to stderr, which Ray's driver prints with the worker's prefix.
log = logging.getLogger(__name__)


def _seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _worker_nodes(world: int) -> list[str]:
    """The node IP of every rank (gathered over the process group)."""
    ip = ray.util.get_node_ip_address()
    if world == 1:
        return [ip]
    gathered: list[Any] = [None] * world
    torch.distributed.all_gather_object(gathered, ip)
    return gathered


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train worker entry: ``config`` holds ``cfg`` (validated config as a dict),
    ``project_root``, ``registration`` (the driver's task class and dataset entry of ``cfg``:
    :class:`~pipeline.tasks.registry.Registration`, so a task registered there trains here
    too), ``tracking`` (``{"uri", "run_id"}`` or None), ``progress`` (``bar`` or ``lines``:
    :class:`~pipeline.training.progress.TrainingProgress`) and ``local_checkpoints`` (the
    directory of this run's checkpoints in local mode, else None)."""
    task_class = config["registration"].install()
    cfg = from_dict(config["cfg"])
    project_root = Path(config["project_root"])
    checkpoint_root = config.get("local_checkpoints")
    checkpoint_root = Path(checkpoint_root) if checkpoint_root else None
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()
    use_cuda = device.type == "cuda"
    if checkpoint_root is not None:  # in the stage process: Ray set no thread count for it
        torch.set_num_threads(max(1, int(cfg.scaling.cpus_per_worker)))
    _seed_everything(cfg.seed)
    if not use_cuda:
        torch.use_deterministic_algorithms(True, warn_only=True)

    task = task_class(cfg, project_root)
    model: nn.Module = task.build_model()
    if use_cuda and cfg.schedule.sync_bn and task.sync_bn and world > 1:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = ray.train.torch.prepare_model(model)
    optimizer = build_optimizer(model, cfg.schedule)
    scheduler = build_scheduler(optimizer, cfg.schedule)
    amp = use_cuda and cfg.schedule.amp  # bf16 autocast: no loss scaling needed

    start, history = 0, History()
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None and checkpoint_root is not None:
        checkpoint = local_checkpoints.latest(checkpoint_root)
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            start, history = load_state(Path(directory), model=model, optimizer=optimizer,
                                        scheduler=scheduler)
        if rank == 0:
            log.info("[%s] resumed from iteration %d", cfg.run_name, start)

    history.worker_nodes = ["local"] if checkpoint_root is not None else _worker_nodes(world)
    if rank == 0:
        log.info("[%s] %d worker(s) on nodes %s", cfg.run_name, world, history.worker_nodes)
    tracker = Tracker(**config["tracking"]) if config.get("tracking") and rank == 0 else None
    schedule = cfg.schedule
    loader = iteration_loader(task.train_dataset(), schedule.batch_size, cfg.seed, start,
                              schedule.iterations, rank, world, cfg.data.loader_workers,
                              task.collate_fn)
    model.train()
    window: list[float] = []
    progress = TrainingProgress(start, schedule.iterations,
                                config.get("progress", "lines") if rank == 0 else "none",
                                cfg.run_name)
    metrics: dict[str, Any] = history.val[-1] if history.val else {}
    for iteration, batch in enumerate(loader, start=start):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss, parts = task.loss(model, batch, device)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        done = iteration + 1
        progress.step()
        window.append(parts["loss"])
        if done % schedule.log_every == 0 or done == schedule.iterations:
            record = {**parts, "loss": sum(window) / len(window), "lr": lr, "iteration": done}
            history.train.append(record)
            window = []
            if rank == 0:
                log.info("[%s] it %d/%d loss %.4f lr %.2e (%s)", cfg.run_name, done,
                         schedule.iterations, record["loss"], lr, progress.summary(done))
                if tracker:
                    tracker.log_metrics({k: v for k, v in record.items() if k != "iteration"},
                                        step=done)
        validate = done % schedule.val_every == 0 or done == schedule.iterations
        save = done % schedule.checkpoint_every == 0 or done == schedule.iterations
        if validate:
            metrics = {**task.validate(unwrap(model), device), "iteration": done}
            history.val.append(metrics)
            if rank == 0:
                log.info("[%s] it %d val %s %.2f", cfg.run_name, done, task.metric,
                         metrics[task.metric])
                if tracker:
                    tracker.log_metrics({f"val_{k}": v for k, v in metrics.items()
                                         if k != "iteration"}, step=done)
        if validate or save:
            _report(metrics, task.metric, done, save and rank == 0, model, optimizer,
                    scheduler, history, checkpoint_root)
    progress.close()
    if start >= schedule.iterations:  # restarted after the last checkpoint: report it again
        _report(metrics, task.metric, start, rank == 0, model, optimizer, scheduler, history,
                checkpoint_root)


def _report(metrics: dict[str, Any], metric: str, iteration: int, with_checkpoint: bool,
            model: nn.Module, optimizer: Any, scheduler: Any, history: History,
            checkpoint_root: Path | None) -> None:
    """``ray.train.report`` on every rank (same count on all); rank 0 attaches the state (in
    local mode written into ``checkpoint_root`` first, where it stays)."""
    scalars = {k: v for k, v in metrics.items() if isinstance(v, int | float)}
    scalars.update(iteration=iteration, metric=scalars.get(metric, float("nan")))
    if not with_checkpoint:
        ray.train.report(scalars)
        return
    if checkpoint_root is not None:
        directory = local_checkpoints.save(
            checkpoint_root, iteration, lambda path: save_state(
                path, model=model, optimizer=optimizer, scheduler=scheduler,
                iteration=iteration, history=history, metrics=metrics))
        ray.train.report(scalars, checkpoint=ray.train.Checkpoint.from_directory(directory))
        return
    with tempfile.TemporaryDirectory() as directory:
        save_state(Path(directory), model=model, optimizer=optimizer, scheduler=scheduler,
                   iteration=iteration, history=history, metrics=metrics)
        ray.train.report(scalars, checkpoint=ray.train.Checkpoint.from_directory(directory))
