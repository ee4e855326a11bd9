"""Stage ``train``: train one experiment with Ray Train and record it in MLflow.

Usage::

    python -m pipeline.train experiment=table1/dgmn_da_dw_ds [profile=default] [key=value ...]

Trains the experiment once per seed of ``seeds`` (the profile's; ``seeds=[3]`` on the command
line for one), each seed its own run with its own outputs.

Checks the config, the dataset root and that the model builds before any worker starts; then
trains, and writes ``runs/<profile>/train/<experiment>/seed<k>/``: ``metrics.json`` (final
validation, and the ``run_key`` and ``run_identity`` it came from), ``history.json`` (loss,
LR and validation curves), ``config.json`` (credentials redacted), ``model.pt`` (weights) and
``curves.png``, all atomically (built in a temporary directory, then renamed); and, for
``dvc plots``, ``runs/<profile>/plots/<experiment>/training.json`` (loss and LR per logged
iteration) and ``validation.json`` (the headline validation metric per validation), both the
mean over the seeds with each seed's value beside it.

The run is identified by the config, the dataset manifest digest and the code digest
(:mod:`pipeline.training.identity`): an interrupted run with all three unchanged resumes, a
finished one is reused, and a change in any of them starts a new run (the log says which
changed). One process at a time trains a run: a second training of the same run stops at once
with an error naming the process that holds it (:mod:`pipeline.common.locks`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from ray.train import WorkerGroupError

from dgmn.metrics import count_complexity
from dgmn.viz.curves import Panel, curves_figure
from pipeline.common.cli import parse_stage_args
from pipeline.common.errors import run_stage
from pipeline.common.fs import atomic_directory, atomic_write_bytes, atomic_write_json
from pipeline.common.locks import exclusive
from pipeline.common.logs import tee_to_file
from pipeline.common.redact import redact
from pipeline.config import PipelineConfig, as_dict, load_config
from pipeline.config.compose import PROJECT_ROOT
from pipeline.evaluation.records import over_seeds, training_curve, validation_curve
from pipeline.layout import TRAINING_CURVE, VALIDATION_CURVE, Layout, remove_other_seeds
from pipeline.tasks.registry import build_task
from pipeline.tracking import (
    Tracker,
    artifact_location,
    git_commit,
    git_source,
    open_run,
    table_tags,
    tracking_uri,
)
from pipeline.training.identity import RunIdentity, run_identity, shaping_config
from pipeline.training.state import STATE_FILE, CheckpointRefusedError, History, read_state
from pipeline.training.trainer import ensure_ray, make_trainer

#: The lock file inside a run directory held by the one process training that run.
RUN_LOCK = "dgmn-run.lock"
#: The run's log: what this process printed while training (its own lines and the Ray
#: workers'), kept in the run directory (a resumed run appends) and copied into the outputs.
TRAIN_LOG = "train.log"


def preflight(cfg: PipelineConfig, project_root: Path) -> dict[str, float]:
    """Fail before Ray starts: the model builds (a bad model config is a
    :class:`~dgmn.models.registry.ModelConfigError`), the dataset root is present, the model
    runs on one input. Returns its params and MACs (paper convention and full) on that input."""
    task = build_task(cfg, project_root)
    model = task.build_model()
    task.data_root()
    counts = count_complexity(model, task.example_input())
    return {"params": counts.params, "params_m": counts.params_m,
            "gmacs_paper": counts.paper_gmacs, "gmacs_full": counts.full_gmacs}


def write_curves(history: History, metric: str, name: str, path: Path) -> None:
    """Training loss, learning rate and validation ``metric`` against iterations, one PNG of
    three :class:`dgmn.viz.curves.Panel` panels."""
    its = [r["iteration"] for r in history.train]
    val_its = [r["iteration"] for r in history.val]
    panels = [Panel("training loss", "loss", {name: (its, [r["loss"] for r in history.train])}),
              Panel("learning rate", "lr", {name: (its, [r["lr"] for r in history.train])}),
              Panel(f"validation {metric}", metric,
                    {name: (val_its, [r.get(metric) for r in history.val])})]
    curves_figure(panels, panel_size=(4.3, 3.6)).savefig(path, dpi=100)


def write_outputs(cfg: PipelineConfig, directory: Path, state_dir: Path, metric: str,
                  extra: dict[str, Any]) -> dict[str, Any]:
    """Fill ``directory`` from the final checkpoint; returns the final metrics."""
    state = read_state(state_dir / STATE_FILE)
    history = History(**state["history"])
    final = {k: v for k, v in state["metrics"].items() if k != "confusion"}
    final.update(metric=metric, worker_nodes=history.worker_nodes, **extra)
    (directory / "metrics.json").write_text(json.dumps(final, indent=2, sort_keys=True) + "\n")
    (directory / "history.json").write_text(json.dumps(
        {"train": history.train,
         "val": [{k: v for k, v in r.items() if k != "confusion"} for r in history.val]},
        indent=2) + "\n")
    (directory / "config.json").write_text(json.dumps(redact(as_dict(cfg)), indent=2) + "\n")
    if "confusion" in state["metrics"]:
        (directory / "confusion.json").write_text(json.dumps(state["metrics"]["confusion"]))
    torch.save(state["model"], directory / "model.pt")
    write_curves(history, metric, cfg.experiment.name, directory / "curves.png")
    return final


def write_seed_curves(cfg: PipelineConfig, project_root: Path, metric: str) -> None:
    """The training and validation curves of the experiment's seeds as DVC plot records: the
    mean over the seeds per iteration, and each seed's value (``<field>_seed<k>``)."""
    layout = Layout.of(cfg, project_root)
    histories = {seed: json.loads((layout.runs.train(layout.experiment, seed)
                                   / "history.json").read_text()) for seed in cfg.seeds}
    atomic_write_json(layout.plots_dir / TRAINING_CURVE, over_seeds(
        {seed: training_curve(h["train"]) for seed, h in histories.items()}, ("loss", "lr")))
    atomic_write_json(layout.plots_dir / VALIDATION_CURVE, over_seeds(
        {seed: validation_curve(h["val"], metric) for seed, h in histories.items()}, ("value",)))


def run_lock(cfg: PipelineConfig, project_root: Path, identity: RunIdentity) -> Path:
    """The lock file of ``identity``'s run directory."""
    return Layout.of(cfg, project_root).ray_storage / identity.key / RUN_LOCK


def _refused_checkpoint(exc: Exception) -> CheckpointRefusedError | None:
    """The :class:`CheckpointRefusedError` a worker raised, if that is why training failed
    (Ray Train hands the workers' own exceptions over in ``worker_failures``)."""
    failures = exc.worker_failures.values() if isinstance(exc, WorkerGroupError) else ()
    return next((f for f in failures if isinstance(f, CheckpointRefusedError)), None)


def train(cfg: PipelineConfig, project_root: Path = PROJECT_ROOT, *,
          parent_run_id: str | None = None) -> dict[str, Any]:
    """Train ``cfg`` end to end and write its outputs; returns the final metrics."""
    complexity = preflight(cfg, project_root)
    identity = run_identity(cfg, project_root)
    with exclusive(run_lock(cfg, project_root, identity),
                   f"another training of {cfg.run_name} is using run {identity.key}; "
                   "wait for it to finish or stop that process"):
        return _train_locked(cfg, project_root, identity, complexity, parent_run_id)


def _train_locked(cfg: PipelineConfig, project_root: Path, identity: RunIdentity,
                  complexity: dict[str, float], parent_run_id: str | None) -> dict[str, Any]:
    key = identity.key
    tracker: Tracker | None = None
    if cfg.tracking.enabled:
        tracker = open_run(
            tracking_uri(cfg, project_root), cfg.tracking.experiment, cfg.run_name, key,
            params=shaping_config(cfg),
            tags={"git_commit": git_commit(project_root), "dataset_manifest": identity.data,
                  "code_digest": identity.code, "config_digest": identity.config,
                  "experiment": cfg.experiment.name, "profile": cfg.profile,
                  **table_tags(cfg), **git_source(project_root, "pipeline/train.py")},
            parent_run_id=parent_run_id,
            artifact_location=artifact_location(cfg, project_root))
        tracker.log_metrics(complexity, step=0)
    log_file = Layout.of(cfg, project_root).ray_storage / key / TRAIN_LOG
    with tee_to_file(log_file):
        if not cfg.scaling.local:  # Ray Train's local mode needs no Ray instance
            ensure_ray(cfg)
        trainer = make_trainer(cfg, project_root, identity=identity,
                               tracking={"uri": tracker.uri, "run_id": tracker.run_id}
                               if tracker else None)
        try:
            result = trainer.fit()
        except Exception as exc:
            if tracker:
                tracker.log_artifact(log_file)
                tracker.finish("FAILED")
            refused = _refused_checkpoint(exc)
            if refused is not None:
                raise refused from None
            raise
    metric = build_task(cfg, project_root).metric
    layout = Layout.of(cfg, project_root)
    out = layout.train_dir
    with result.checkpoint.as_directory() as state_dir, atomic_directory(out) as tmp:
        final = write_outputs(cfg, tmp, Path(state_dir), metric,
                              {**complexity, "run_key": key, "seed": cfg.seed,
                               "run_identity": identity.components()})
    atomic_write_bytes(out / TRAIN_LOG, log_file.read_bytes())  # the log up to here
    if tracker:
        record_run(tracker, cfg, project_root, identity, out)
    return final


def record_run(tracker: Tracker, cfg: PipelineConfig, project_root: Path,
               identity: RunIdentity, out: Path) -> None:
    """The finished training in MLflow: its output files as artifacts, the trained model as a
    logged model (registered as ``<tracking.experiment>-<run name>`` when
    ``tracking.register_model``), the dataset as the run's training input with its manifest
    digest; then the run ends."""
    for name in ("metrics.json", "history.json", "config.json", "curves.png", "model.pt",
                 "confusion.json", TRAIN_LOG):
        if (out / name).exists():
            tracker.log_artifact(out / name)
    task = build_task(cfg, project_root)
    model = task.build_model()
    model.load_state_dict(torch.load(out / "model.pt", map_location="cpu", weights_only=True))
    tracker.log_model(model, task.example_input(),
                      registered_name=f"{cfg.tracking.experiment}-{cfg.run_name}"
                      if cfg.tracking.register_model else None)
    tracker.log_dataset(cfg.data.name, Layout.of(cfg, project_root).processed_data,
                        identity.data, context="training")
    tracker.finish()


def main(argv: Sequence[str] | None = None) -> None:
    parsed = parse_stage_args(argv, prog="python -m pipeline.train", doc=__doc__)
    if parsed is None:
        return
    cfg = load_config(parsed.overrides)
    finals = train_seeds(cfg)
    metric = finals[0]["metric"]
    print(json.dumps({"experiment": cfg.experiment.name,
                      metric: {f"seed{f['seed']}": f.get(metric) for f in finals}}))


def train_seeds(cfg: PipelineConfig, project_root: Path = PROJECT_ROOT) -> list[dict[str, Any]]:
    """The train stage: one training per seed of ``cfg.seeds`` (each its own run, reused while
    config, data and code match), then the curves over the seeds; returns each run's final
    metrics."""
    finals = [train(cfg.with_seed(seed), project_root) for seed in cfg.seeds]
    layout = Layout.of(cfg, project_root)
    remove_other_seeds(layout.runs.train(layout.experiment), cfg.seeds)
    write_seed_curves(cfg, project_root, finals[0]["metric"])
    return finals


if __name__ == "__main__":
    sys.exit(run_stage(main, None))
