"""Stage ``tune``: a Ray Tune sweep over the sampling rates φ and the groups G (Tables 6, 7).

Usage::

    python -m pipeline.tune [profile=default] [tune.scheduler=asha] [key=value ...]

Every trial is a Ray Train run (``TorchTrainer`` inside a Tune function trainable, the Train V2
way; ``Tuner(trainer)`` is gone) of ``tune.base_experiment`` with the trial's φ and G, and an
MLflow child run of one sweep run (its loss, LR and validation curves as metrics per iteration,
its params and GMACs, ``history.json``). The sweep run records the winner: tags and params
``best.rates``, ``best.groups`` and the metric ``best/<tune.metric>``. Tune's search space holds
φ and G only, so its trial table shows each trial's own φ and G (the base config reaches the
trials through :func:`tune.with_parameters`). Writes ``runs/<profile>/tune/results.{json,csv,md}``:
trial, φ, G, metric, params, GMACs.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback
from ray.tune.schedulers import ASHAScheduler

from dgmn.metrics import count_complexity
from dgmn.models import build_model
from dgmn.models.registry import ModelConfigError
from pipeline.common.cli import parse_stage_args
from pipeline.common.errors import run_stage
from pipeline.common.fs import atomic_write_json, atomic_write_text
from pipeline.common.logs import setup_logging
from pipeline.common.redact import redact
from pipeline.config import PipelineConfig, as_dict, from_dict, load_config
from pipeline.config.compose import PROJECT_ROOT, with_experiment
from pipeline.config.schema import ConfigError, TuneSettings
from pipeline.layout import Layout
from pipeline.tasks.registry import build_task
from pipeline.tracking import (
    Tracker,
    artifact_location,
    git_commit,
    git_source,
    open_run,
    tracking_uri,
)
from pipeline.training.identity import shaping_config
from pipeline.training.state import STATE_FILE, History, read_state
from pipeline.training.trainer import ensure_ray, make_trainer, run_key

TRIAL_CPUS = 0.25  # the trial's own actor only waits on its Train run


def with_rates_and_groups(cfg: PipelineConfig, rates: Sequence[int], groups: int,
                          project_root: Path = PROJECT_ROOT) -> PipelineConfig:
    """``cfg`` with its DGMN modules' φ and G replaced (how is the task's business:
    :meth:`~pipeline.tasks.base.Task.with_rates_and_groups`), named after them."""
    data = as_dict(cfg)
    data["model"] = build_task(cfg, project_root).with_rates_and_groups(data["model"], rates,
                                                                         groups)
    data["experiment"]["name"] = (f"{cfg.experiment.name}/phi_{'_'.join(map(str, rates))}"
                                  f"_g{groups}")
    return from_dict(data)


def check_grid(base: PipelineConfig, settings: TuneSettings, project_root: Path = PROJECT_ROOT
               ) -> None:
    """Fail at start-up (before data, MLflow or Ray) on a model config that cannot be built
    (a :class:`~dgmn.models.registry.ModelConfigError` naming its key) or a grid value the model
    rejects, naming its key: each G with the first φ, then each further φ with the first G. The
    DGMN module checks both when it is built, e.g. that G divides its input channels C; backbone
    weights are not loaded for this."""
    build_model({**base.model, "weights": None})
    cases = [("tune.groups", groups, settings.rates[0], groups) for groups in settings.groups]
    cases += [("tune.rates", rates, rates, settings.groups[0]) for rates in settings.rates[1:]]
    for key, value, rates, groups in cases:
        model = with_rates_and_groups(base, rates, groups, project_root).model
        try:
            build_model({**model, "weights": None})
        except ModelConfigError as exc:
            raise ConfigError(f"config key {key}={value!r} (tune.base_experiment="
                              f"{base.experiment.name!r}): {exc}") from None


def model_complexity(cfg: PipelineConfig, project_root: Path) -> tuple[float, float]:
    """(params in M, GMACs in the paper's convention) of the whole model on one crop."""
    task = build_task(cfg, project_root)
    counts = count_complexity(task.build_model(), task.example_input())
    return counts.params_m, counts.paper_gmacs


def trial_space(settings: TuneSettings) -> dict[str, Any]:
    """Tune's ``param_space``: the φ × G grid and nothing else. Tune prints it per trial and
    writes it into its experiment files under the (possibly shared) Ray storage; the base
    config and the parent run reach the trials through :func:`tune.with_parameters` (Ray's
    object store), see :func:`run_trial`."""
    return {"rates": tune.grid_search([list(r) for r in settings.rates]),
            "groups": tune.grid_search(list(settings.groups))}


def run_trial(config: dict[str, Any], base: dict[str, Any] | None = None,
              project_root: str = str(PROJECT_ROOT), parent: dict[str, str] | None = None,
              config_uri: str | None = None, parent_uri: str | None = None) -> None:
    """Tune function trainable: one Ray Train run of ``base`` (a redacted config dict) with this
    trial's φ and G (``config``), an MLflow child run of ``parent`` (``run_id``, ``commit``)
    when given. ``config_uri`` and ``parent_uri`` are the unredacted ``tracking.uri`` of the
    base config and the parent run's store. All but ``config`` are bound with
    :func:`tune.with_parameters`."""
    setup_logging()  # this trial's process: its log lines reach the driver like a stage's
    data = dict(base or {})
    data["tracking"] = {**data["tracking"], "uri": config_uri}
    root = Path(project_root)
    cfg = with_rates_and_groups(from_dict(data), config["rates"], config["groups"], root)
    tracker: Tracker | None = None
    if parent:
        tracker = open_run(parent_uri, cfg.tracking.experiment, cfg.run_name,
                           run_key(cfg, root), params=shaping_config(cfg),
                           tags={"git_commit": parent["commit"], "stage": "tune-trial",
                                 "experiment": cfg.experiment.name, "profile": cfg.profile,
                                 "rates": str(config["rates"]),
                                 "groups": str(config["groups"]),
                                 **git_source(root, "pipeline/tune.py")},
                           parent_run_id=parent["run_id"])
        params_m, gmacs = model_complexity(cfg, root)
        tracker.log_metrics({"params_m": params_m, "gmacs_paper": gmacs}, step=0)
    trainer = make_trainer(cfg, root, callbacks=[TuneReportCallback()],
                           tracking={"uri": tracker.uri, "run_id": tracker.run_id}
                           if tracker else None)
    try:
        result = trainer.fit()
    except Exception:
        if tracker:
            tracker.finish("FAILED")
        raise
    if tracker:
        with result.checkpoint.as_directory() as state_dir:
            history = History(**read_state(Path(state_dir) / STATE_FILE)["history"])
        tracker.log_dict({"train": history.train,  # the curves; confusion matrices left out
                          "val": [{k: v for k, v in r.items() if k != "confusion"}
                                  for r in history.val]}, "history.json")
        tracker.finish()


def record_best(tracker: Tracker, rows: Sequence[dict[str, Any]], settings: TuneSettings
                ) -> dict[str, Any] | None:
    """The sweep run's record of the winning trial (``tune.mode`` of ``tune.metric``): tags
    and params ``best.rates``/``best.groups``, metric ``best/<metric>``. None if no trial
    produced the metric."""
    scored = [r for r in rows if r["value"] == r["value"]]  # NaN: the trial failed
    if not scored:
        return None
    sign = 1 if settings.mode == "max" else -1
    best = max(scored, key=lambda r: sign * r["value"])
    chosen = {"best.rates": str(best["rates"]), "best.groups": str(best["groups"])}
    tracker.set_tags(chosen)
    tracker.log_params(chosen)
    tracker.log_metrics({f"best/{settings.metric}": best["value"]}, step=0)
    return best


def sweep(overrides: Sequence[str], project_root: Path = PROJECT_ROOT
          ) -> list[dict[str, Any]]:
    """Run the sweep of ``tune`` composed with ``overrides`` (the base experiment gets the same
    overrides); returns one row per trial."""
    cfg = load_config(overrides)
    base = load_config(with_experiment(overrides, cfg.tune.base_experiment))
    if base.scaling.local:
        # Ray Train's local mode cannot run inside a Tune trial (Ray refuses the Train API in
        # a Tune function): a trial trains with one Ray Train worker instead (one torch
        # thread), whose CPU share leaves room for the trial's own actor, so that
        # tune.max_concurrent_trials trials fit side by side on as many cores.
        base = dataclasses.replace(base, scaling=dataclasses.replace(
            base.scaling, num_workers=1, cpus_per_worker=1 - TRIAL_CPUS))
    settings = cfg.tune
    check_grid(base, settings, project_root)
    layout = Layout.of(cfg, project_root)
    build_task(base, project_root).data_root()  # the dataset must exist before Ray starts
    complexity = {(tuple(r), g): model_complexity(with_rates_and_groups(base, r, g,
                                                                        project_root),
                                                  project_root)
                  for r in settings.rates for g in settings.groups}
    parent: dict[str, str] | None = None
    sweep_tracker: Tracker | None = None
    if cfg.tracking.enabled:
        uri = tracking_uri(cfg, project_root)
        sweep_tracker = open_run(uri, cfg.tracking.experiment, f"tune-{base.run_name}",
                                 f"tune-{run_key(base, project_root)}",
                                 params={"tune": as_dict(cfg)["tune"]},
                                 tags={"git_commit": git_commit(project_root),
                                       "profile": cfg.profile, "stage": "tune",
                                       "base_experiment": base.experiment.name,
                                       **git_source(project_root, "pipeline/tune.py")},
                                 artifact_location=artifact_location(cfg, project_root))
        parent = {"run_id": sweep_tracker.run_id, "commit": git_commit(project_root)}
    ensure_ray(cfg)
    scheduler = None
    if settings.scheduler == "asha":
        scheduler = ASHAScheduler(time_attr="iteration", max_t=base.schedule.iterations,
                                  grace_period=min(base.schedule.val_every,
                                                   base.schedule.iterations))
    trainable = tune.with_parameters(
        run_trial, base=redact(as_dict(base)), project_root=str(project_root), parent=parent,
        config_uri=base.tracking.uri, parent_uri=sweep_tracker.uri if sweep_tracker else None)
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": TRIAL_CPUS}),
        param_space=trial_space(settings),
        tune_config=tune.TuneConfig(metric="metric", mode=settings.mode, scheduler=scheduler,
                                    num_samples=settings.num_samples,
                                    max_concurrent_trials=settings.max_concurrent_trials),
        run_config=tune.RunConfig(name=f"tune-{run_key(base, project_root)}",
                                  storage_path=str(layout.ray_storage)),
    )
    grid = tuner.fit()
    rows = []
    for index, result in enumerate(grid):
        rates, groups = result.config["rates"], result.config["groups"]
        params_m, gmacs = complexity[(tuple(rates), groups)]
        metrics = result.metrics or {}
        rows.append({"trial": index, "rates": rates, "groups": groups,
                     "metric": settings.metric,
                     "value": metrics.get(settings.metric, float("nan")),
                     "iterations": metrics.get("iteration"),
                     "params_m": round(params_m, 4), "gmacs": round(gmacs, 4),
                     "error": str(result.error) if result.error else None})
    rows.sort(key=lambda r: (len(r["rates"]), r["rates"], r["groups"]))
    if sweep_tracker:
        record_best(sweep_tracker, rows, settings)
    write_results(rows, layout.tune_dir)
    if sweep_tracker:
        for name in ("results.json", "results.csv", "results.md"):
            sweep_tracker.log_artifact(layout.tune_dir / name)
        sweep_tracker.finish()
    return rows


def results_markdown(rows: Sequence[dict[str, Any]]) -> str:
    metric = rows[0]["metric"] if rows else "metric"
    lines = [f"| trial | φ | G | {metric} | params (M) | GMACs |", "|---:|---|---:|---:|---:|---:|"]
    lines += [f"| {r['trial']} | {{{', '.join(map(str, r['rates']))}}} | {r['groups']} | "
              f"{r['value']:.2f} | {r['params_m']:.2f} | {r['gmacs']:.2f} |" for r in rows]
    return "\n".join(lines)


def write_results(rows: Sequence[dict[str, Any]], directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_json(directory / "results.json", list(rows))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["trial"])
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "rates": " ".join(map(str, row["rates"]))})
    atomic_write_text(directory / "results.csv", buffer.getvalue())
    atomic_write_text(directory / "results.md", results_markdown(rows) + "\n")


def main(argv: Sequence[str] | None = None) -> None:
    parsed = parse_stage_args(argv, prog="python -m pipeline.tune", doc=__doc__)
    if parsed is None:
        return
    rows = sweep(parsed.overrides)
    print(results_markdown(rows))
    failed = [r for r in rows if r["error"]]
    if failed:
        print(json.dumps(failed, indent=2), file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    sys.exit(run_stage(main, None))

