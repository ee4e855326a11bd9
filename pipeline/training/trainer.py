"""Ray Train plumbing: connect to (or start) Ray and build the ``TorchTrainer`` of a config.

Two Ray Train 2.60 defaults are changed here, each at its cause:

- **Every worker line printed twice.** Train V2 patches ``print`` in its workers to copy each
  call to the root logger, whose console handler writes it again (to stderr), besides the
  plain write to stdout. ``RAY_TRAIN_ENABLE_PRINT_PATCH=0`` (:data:`WORKER_ENV`; Train hands
  it from the driver to its controller and workers) keeps ``print`` plain, and the training
  loop logs through :mod:`logging` anyway: one line per event.
- **"Failed to query Ray Train Controller actor state", every second.** Each run starts a
  detached ``PlacementGroupCleaner`` that asks Ray's *state API* once a second whether the
  controller is alive, to remove the workers' placement group should it die. The state API
  is a module of the Ray dashboard, which needs ``ray[default]``'s dashboard packages (this
  project installs ``ray[train,tune]``) and is not loaded with ``include_dashboard=False``:
  the dashboard process that still starts answers nothing there, every query fails and the
  cleaner logs that warning for the whole run (with two Ray instances on one machine its
  address lookup fails instead and its thread dies with a traceback). It never sees the
  controller either way, so :class:`ProjectTorchTrainer` leaves it out when the state API
  does not answer (asked once per run). A job's placement groups are removed by Ray when its
  driver exits, and a local instance ends with its stage.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import ray
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchConfig, TorchTrainer
from ray.train.v2._internal.callbacks.placement_group_callback import (
    PlacementGroupCleanerCallback,
)

from pipeline.common.logs import progress_mode
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

__all__ = ["ProjectTorchTrainer", "ensure_ray", "make_trainer", "run_key"]

log = logging.getLogger(__name__)
#: In a run directory: the checkpoints of a run in Ray Train's local mode
#: (:mod:`pipeline.training.local_checkpoints`).
LOCAL_CHECKPOINTS = "local_checkpoints"
#: Environment of the Ray processes of a run (see the module docstring).
WORKER_ENV = {"RAY_TRAIN_ENABLE_PRINT_PATCH": "0"}


def state_api_available() -> bool:
    """Whether the connected Ray cluster answers its state API (the dashboard's state module)."""
    from ray.util.state import list_actors
    from ray.util.state.exception import RayStateApiException

    try:
        list_actors(address=ray.get_runtime_context().gcs_address, limit=1, timeout=10,
                    raise_on_missing_output=False)
    except (RayStateApiException, ConnectionError, ValueError):
        return False
    return True


class ProjectTorchTrainer(TorchTrainer):
    """``TorchTrainer`` without Ray Train's placement-group cleaner where the cluster serves no
    state API, the one thing the cleaner works with (see the module docstring)."""

    def _create_default_callbacks(self) -> list[Any]:
        # Private hook of Ray Train 2.60 (pinned): where Train lists its built-in callbacks.
        callbacks = super()._create_default_callbacks()
        if state_api_available():
            return callbacks
        return [c for c in callbacks if not isinstance(c, PlacementGroupCleanerCallback)]


def ensure_ray(cfg: PipelineConfig) -> None:
    """Join ``scaling.address`` (``auto`` = the running cluster), else ``$RAY_ADDRESS`` (the
    instance ``scripts/run_pipeline.sh`` started), else start a local instance for this
    process: :func:`~pipeline.common.ray_local.init_local`, 127.0.0.1 only, token auth."""
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # A local instance serves short runs: poll worker health more often than the 2 s default.
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
    # In this process (a local instance's processes inherit it) and, for a cluster joined
    # below, in the job's runtime environment (a Tune trial builds its trainer in a worker).
    for key, value in WORKER_ENV.items():
        os.environ.setdefault(key, value)
    job_env = {"env_vars": {key: os.environ[key] for key in WORKER_ENV}}
    if cfg.scaling.address:
        ray.init(address=cfg.scaling.address, log_to_driver=True, runtime_env=job_env)
    elif os.environ.get("RAY_ADDRESS"):  # a cluster the caller started (run_pipeline.sh)
        ray.init(log_to_driver=True, runtime_env=job_env)
    else:
        init_local(num_cpus=cfg.scaling.ray_num_cpus)


def make_trainer(cfg: PipelineConfig, project_root: Path, *,
                 tracking: dict[str, str] | None = None, identity: RunIdentity | None = None,
                 storage_path: Path | None = None, callbacks: list[Any] | None = None,
                 ) -> TorchTrainer:
    """The ``TorchTrainer`` of ``cfg``: workers and resources from ``scaling``, DDP backend by
    device (NCCL on GPU, gloo on CPU), checkpoints under ``paths.ray_storage`` in a run
    directory named by the run key of ``identity`` (default: :func:`run_identity` of ``cfg``),
    ``FailureConfig(max_failures)``; rank 0 draws a progress bar when this process has a
    terminal (:func:`~pipeline.common.logs.progress_mode`). Logs whether that run is new (and
    what changed since the experiment's previous run) or resumed, and records the identity in
    the run directory."""
    identity = identity or run_identity(cfg, project_root)
    scaling = cfg.scaling
    resources = {"CPU": scaling.cpus_per_worker}
    if scaling.use_gpu:
        resources["GPU"] = scaling.gpus_per_worker or 1
    storage = (storage_path.resolve() if storage_path
               else Layout.of(cfg, project_root).ray_storage)
    log.info("[%s] %s", cfg.run_name, describe_run(storage, identity, cfg))
    (storage / identity.key).mkdir(parents=True, exist_ok=True)
    record_identity(storage / identity.key, identity, cfg)
    return ProjectTorchTrainer(
        train_loop_per_worker,
        train_loop_config={"cfg": as_dict(cfg), "project_root": str(project_root),
                           "registration": Registration.of(cfg), "tracking": tracking,
                           "progress": progress_mode(),
                           "local_checkpoints": str(storage / identity.key / LOCAL_CHECKPOINTS)
                           if scaling.local else None},
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
