"""Ray Train plumbing: connect to (or start) Ray and build the ``TorchTrainer`` of a config."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import ray
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchConfig, TorchTrainer

from pipeline.common.ray_local import init_local
from pipeline.config.compose import as_dict
from pipeline.config.schema import PipelineConfig
from pipeline.layout import Layout
from pipeline.tasks.registry import Registration
from pipeline.training.identity import (
    RunIdentity,
    describe_run,
    record_identity,
    run_identity,
    run_key,
)
from pipeline.training.loop import train_loop_per_worker

__all__ = ["ensure_ray", "make_trainer", "run_key"]


def ensure_ray(cfg: PipelineConfig) -> None:
    """Join ``scaling.address`` (``auto`` = the running cluster), else ``$RAY_ADDRESS`` (the
    instance ``scripts/run_pipeline.sh`` started), else start a local instance for this
    process: :func:`~pipeline.common.ray_local.init_local`, 127.0.0.1 only, token auth."""
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # A local instance serves short runs: poll worker health more often than the 2 s default.
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
    if cfg.scaling.address:
        ray.init(address=cfg.scaling.address, log_to_driver=True)
    elif os.environ.get("RAY_ADDRESS"):  # a cluster the caller started (run_pipeline.sh)
        ray.init(log_to_driver=True)
    else:
        init_local(num_cpus=cfg.scaling.ray_num_cpus)


def make_trainer(cfg: PipelineConfig, project_root: Path, *,
                 tracking: dict[str, str] | None = None, identity: RunIdentity | None = None,
                 storage_path: Path | None = None, callbacks: list[Any] | None = None,
                 ) -> TorchTrainer:
    """The ``TorchTrainer`` of ``cfg``: workers and resources from ``scaling``, DDP backend by
    device (NCCL on GPU, gloo on CPU), checkpoints under ``paths.ray_storage`` in a run
    directory named by the run key of ``identity`` (default: :func:`run_identity` of ``cfg``),
    ``FailureConfig(max_failures)``. Logs whether that run is new (and what changed since the
    experiment's previous run) or resumed, and records the identity in the run directory."""
    identity = identity or run_identity(cfg, project_root)
    scaling = cfg.scaling
    resources = {"CPU": scaling.cpus_per_worker}
    if scaling.use_gpu:
        resources["GPU"] = scaling.gpus_per_worker or 1
    storage = (storage_path.resolve() if storage_path
               else Layout.of(cfg, project_root).ray_storage)
    print(f"[{cfg.run_name}] {describe_run(storage, identity, cfg)}", flush=True)
    (storage / identity.key).mkdir(parents=True, exist_ok=True)
    record_identity(storage / identity.key, identity, cfg)
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"cfg": as_dict(cfg), "project_root": str(project_root),
                           "registration": Registration.of(cfg), "tracking": tracking},
        torch_config=TorchConfig(backend="nccl" if scaling.use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=scaling.num_workers, use_gpu=scaling.use_gpu,
                                     resources_per_worker=resources),
        run_config=RunConfig(
            name=identity.key,
            storage_path=str(storage),
            failure_config=FailureConfig(max_failures=scaling.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            callbacks=callbacks,
        ),
    )
