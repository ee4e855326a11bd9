"""The one map of the project's paths, built from the config: nothing else formats them.

::

    <paths.raw>/<data.name>/                  fetched dataset
    <paths.processed>/<data.name>/            preprocessed dataset (+ manifest.json)
    <paths.runs>/<profile>/train/<experiment>/seed<k>/  train stage outputs, one run per seed
    <paths.runs>/<profile>/eval/<experiment>/seed<k>/   evaluate stage outputs, per seed
    <paths.runs>/<profile>/metrics/<experiment>.json   evaluate: the scores over the seeds
                                                (DVC metrics)
    <paths.runs>/<profile>/plots/<experiment>/  train and evaluate: curves and per-class
                                                scores as records (DVC plots)
    <paths.runs>/<profile>/tune/                tune stage outputs
    <paths.reports>/<profile>/                report stage outputs (default reports/)
    <paths.ray_storage>/                      Ray Train / Tune run directories (checkpoints)
    mlflow.db, mlruns/                        the project's own MLflow store and artifacts

Relative settings are taken from the project root; ``<experiment>`` is the experiment whose
training a config is (``cfg.trained_as``, e.g. ``table1/dgmn_da``). The metrics and plots
files sit outside the stages' cached output directories: DVC declares them uncached (git keeps
them, so ``dvc exp show`` has them per experiment) and forbids an output inside another.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.config.schema import PipelineConfig

#: The default runs root (``paths.runs``) and the report stage's output root (per profile below
#: it), relative to the project root.
RUNS = "runs"
REPORTS = "reports"
#: The project's own MLflow SQLite store and artifact root, relative to the project root.
MLFLOW_STORE = "mlflow.db"
MLFLOW_ARTIFACTS = "mlruns"
#: The DVC plot files of an experiment (records, one JSON list each), in its plots directory:
#: training loss and learning rate per logged iteration (train), the headline validation
#: metric per validation (train), the score of each class (evaluate).
TRAINING_CURVE = "training.json"
VALIDATION_CURVE = "validation.json"
PER_CLASS = "per_class.json"
#: In each seed's eval directory: that run's scores (the evaluate stage writes them, the
#: report's paired comparisons read them).
SEED_SCORES = "scores.json"


def seed_dir(seed: int) -> str:
    """The directory name of one seed's run inside an experiment's train or eval directory."""
    return f"seed{seed}"


def remove_other_seeds(parent: Path, seeds: Sequence[int]) -> None:
    """Delete the seed directories under ``parent`` (an experiment's train or eval directory)
    of seeds not in ``seeds``: a stage run outside DVC, which empties a stage's outputs itself,
    would otherwise keep a dropped seed's outputs."""
    keep = {seed_dir(seed) for seed in seeds}
    for path in parent.glob("seed*"):
        if path.is_dir() and path.name not in keep:
            shutil.rmtree(path)


def reports_dir(project_root: Path, profile: str, reports: str = REPORTS) -> Path:
    """The report stage's output directory of ``profile``."""
    return Path(project_root) / reports / profile


@dataclass(frozen=True)
class RunDirs:
    """The stage outputs of one profile (``<runs>/<profile>/``)."""

    root: Path

    @classmethod
    def of(cls, runs: Path, profile: str) -> RunDirs:
        return cls(Path(runs) / profile)

    def train(self, experiment: str, seed: int | None = None) -> Path:
        """The train stage's output of ``experiment`` (a DVC output), or of one seed's run."""
        path = self.root / "train" / experiment
        return path if seed is None else path / seed_dir(seed)

    def eval(self, experiment: str, seed: int | None = None) -> Path:
        """The evaluate stage's output of ``experiment`` (a DVC output), or of one seed's run."""
        path = self.root / "eval" / experiment
        return path if seed is None else path / seed_dir(seed)

    def metrics(self, experiment: str) -> Path:
        """The evaluate stage's scores of ``experiment`` (numbers only: DVC's metrics file)."""
        return self.root / "metrics" / f"{experiment}.json"

    def plots(self, experiment: str) -> Path:
        """The directory of ``experiment``'s DVC plot files (:data:`TRAINING_CURVE`, …)."""
        return self.root / "plots" / experiment

    def tune(self) -> Path:
        return self.root / "tune"


@dataclass(frozen=True)
class Layout:
    """Every path of one config (see the module docstring)."""

    raw_data: Path
    processed_data: Path
    runs_root: Path
    runs: RunDirs
    reports: Path
    ray_storage: Path
    mlflow_store: Path
    mlflow_artifacts: Path
    experiment: str
    seed: int

    @classmethod
    def of(cls, cfg: PipelineConfig, project_root: Path) -> Layout:
        root = Path(project_root)
        paths = cfg.paths
        return cls(
            raw_data=root / paths.raw / cfg.data.name,
            processed_data=root / paths.processed / cfg.data.name,
            runs_root=root / paths.runs,
            runs=RunDirs.of(root / paths.runs, cfg.profile),
            reports=reports_dir(root, cfg.profile, getattr(paths, "reports", REPORTS)),
            ray_storage=(root / paths.ray_storage).resolve(),
            mlflow_store=(root / MLFLOW_STORE).resolve(),
            mlflow_artifacts=(root / MLFLOW_ARTIFACTS).resolve(),
            experiment=cfg.trained_as,
            seed=cfg.seed,
        )

    @property
    def train_dir(self) -> Path:
        """The outputs of this config's training run (its ``seed``)."""
        return self.runs.train(self.experiment, self.seed)

    @property
    def eval_dir(self) -> Path:
        """The evaluation outputs of this config's training run (its ``seed``)."""
        return self.runs.eval(self.experiment, self.seed)

    @property
    def metrics_file(self) -> Path:
        """This experiment's evaluation scores (DVC metrics)."""
        return self.runs.metrics(self.experiment)

    @property
    def plots_dir(self) -> Path:
        """This experiment's DVC plot files."""
        return self.runs.plots(self.experiment)

    @property
    def tune_dir(self) -> Path:
        """The profile's tune stage outputs."""
        return self.runs.tune()

    @property
    def manifest(self) -> Path:
        """The preprocessed dataset's manifest (its digest identifies the data of a run)."""
        return self.processed_data / "manifest.json"
