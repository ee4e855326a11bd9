"""Dataclass schemas of the Hydra config (``conf/``): types, allowed values, cross-field rules.

A composed config is merged onto :class:`PipelineConfig` with OmegaConf (wrong types and
unknown keys fail naming the key), then instantiated, which runs every ``__post_init__``
check (bad values fail naming the key and value). Both happen at start-up.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from pipeline.common.errors import StageError
from pipeline.tasks.catalog import DATASETS, TASK_MODELS


class ConfigError(StageError):
    """A config value that cannot work; the message names the key and the value."""


def _require(condition: bool, key: str, value: Any, rule: str) -> None:
    if not condition:
        raise ConfigError(f"config key {key}={value!r}: {rule}")


@dataclass
class ExperimentMeta:
    """Which paper table row an experiment reproduces."""

    name: str = "???"
    table: str = "???"
    row: int = 0
    label: str = ""
    alias_of: str | None = None


@dataclass
class DataSettings:
    task: str = "segmentation"
    name: str = "cityscapes"
    source: str = "real"
    num_classes: int = 19
    ignore_index: int = 255
    train_split: str = "train"
    val_split: str = "val"
    crop_size: list[int] = field(default_factory=lambda: [769, 769])
    scale_range: list[float] = field(default_factory=lambda: [0.5, 2.0])
    flip: bool = True
    val_max_images: int | None = None
    val_batch_size: int = 1
    loader_workers: int = 4
    cache_decoded: bool = False
    min_size: int = 800
    max_size: int = 1333

    def __post_init__(self) -> None:
        _require(self.name in DATASETS, "data.name", self.name,
                 f"must be one of {sorted(DATASETS)}")
        entry = DATASETS[self.name]
        _require(self.task == entry.task, "data.task", self.task,
                 f"dataset {self.name} is for {entry.task}")
        _require(self.source in ("real", "synthetic"), "data.source", self.source,
                 "must be 'real' or 'synthetic'")
        _require(self.source == "real" or entry.synthetic is not None, "data.source",
                 self.source, f"dataset {self.name} has no synthetic stand-in")
        _require(self.num_classes > 0, "data.num_classes", self.num_classes, "must be > 0")
        _require(len(self.crop_size) == 2 and min(self.crop_size) > 0, "data.crop_size",
                 self.crop_size, "must be two positive sizes [H, W]")
        _require(len(self.scale_range) == 2 and 0 < self.scale_range[0] <= self.scale_range[1],
                 "data.scale_range", self.scale_range, "must be [low, high] with 0 < low <= high")
        _require(self.val_max_images is None or self.val_max_images > 0, "data.val_max_images",
                 self.val_max_images, "must be null or > 0")
        _require(self.val_batch_size >= 1, "data.val_batch_size", self.val_batch_size, ">= 1")
        _require(self.loader_workers >= 0, "data.loader_workers", self.loader_workers, ">= 0")
        _require(0 < self.min_size <= self.max_size, "data.min_size", self.min_size,
                 f"must be in (0, data.max_size={self.max_size}]")

    @property
    def dataset(self) -> str:
        """What fetch materialises (e.g. ``synthetic_cityscapes``); the directories under
        data/raw and data/processed are named by :attr:`name` whatever the source."""
        synthetic = DATASETS[self.name].synthetic
        return synthetic if self.source == "synthetic" and synthetic else self.name


@dataclass
class ScheduleSettings:
    iterations: int = 40000
    batch_size: int = 8
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    policy: str = "poly"
    power: float = 0.9
    warmup_iters: int = 0
    warmup_factor: float = 1.0
    lr_steps: list[int] = field(default_factory=list)
    lr_gamma: float = 0.1
    ohem: bool = False
    ohem_threshold: float = 0.7
    ohem_min_kept: int = 100000
    amp: bool = True
    sync_bn: bool = True
    val_every: int = 4000
    checkpoint_every: int = 2000
    log_every: int = 50

    def __post_init__(self) -> None:
        for key in ("iterations", "batch_size", "val_every", "checkpoint_every", "log_every"):
            value = getattr(self, key)
            _require(value > 0, f"schedule.{key}", value, "must be > 0")
        _require(self.lr > 0, "schedule.lr", self.lr, "must be > 0")
        _require(self.policy in ("poly", "step"), "schedule.policy", self.policy,
                 "must be 'poly' or 'step'")
        _require(0 <= self.warmup_iters < self.iterations, "schedule.warmup_iters",
                 self.warmup_iters, f"must be in [0, schedule.iterations={self.iterations})")
        _require(0 < self.warmup_factor <= 1, "schedule.warmup_factor", self.warmup_factor,
                 "must be in (0, 1]")
        _require(list(self.lr_steps) == sorted(self.lr_steps), "schedule.lr_steps",
                 self.lr_steps, "must be increasing")


@dataclass
class ScalingSettings:
    address: str | None = None
    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    max_failures: int = 2
    ray_num_cpus: int | None = None

    @property
    def local(self) -> bool:
        """``num_workers: 0``: Ray Train's local mode, the training function runs in the stage
        process (no Ray instance, no worker actors) with ``cpus_per_worker`` torch threads."""
        return self.num_workers == 0

    def __post_init__(self) -> None:
        _require(self.num_workers >= 0, "scaling.num_workers", self.num_workers,
                 "must be >= 0 (0 = Ray Train local mode, in the stage process)")
        _require(self.cpus_per_worker >= 0, "scaling.cpus_per_worker", self.cpus_per_worker,
                 "must be >= 0")
        _require(self.max_failures >= -1, "scaling.max_failures", self.max_failures,
                 "must be >= -1 (-1 = retry forever)")


@dataclass
class TrackingSettings:
    uri: str | None = None
    experiment: str = "dgmn"
    enabled: bool = True
    register_model: bool = False  # also register each trained model (docs/tracking.md)


@dataclass
class TuneSettings:
    base_experiment: str = "table1/dgmn_da_dw_ds"
    rates: list[list[int]] = field(default_factory=lambda: [[1]])
    groups: list[int] = field(default_factory=lambda: [4])
    scheduler: str = "grid"
    metric: str = "miou"
    mode: str = "max"
    max_concurrent_trials: int = 1
    num_samples: int = 1

    def __post_init__(self) -> None:
        _require(len(self.rates) > 0, "tune.rates", self.rates, "must list at least one φ")
        for rates in self.rates:
            _require(len(rates) > 0 and all(r > 0 for r in rates), "tune.rates", rates,
                     "every φ must be a non-empty list of positive rates")
        _require(len(self.groups) > 0 and all(g > 0 for g in self.groups), "tune.groups",
                 self.groups, "must be a non-empty list of positive group counts")
        _require(self.scheduler in ("grid", "asha"), "tune.scheduler", self.scheduler,
                 "must be 'grid' or 'asha'")
        _require(self.mode in ("max", "min"), "tune.mode", self.mode, "must be 'max' or 'min'")
        _require(self.max_concurrent_trials > 0, "tune.max_concurrent_trials",
                 self.max_concurrent_trials, "must be > 0")


@dataclass
class FetchSettings:
    """How the fetch stage gets the real archives (the synthetic data needs none of it).

    Relative paths are taken from the project root; ``archives_dir`` null means
    ``data/archives/<dataset>``, ``checksums`` null the packaged ``pipeline/data/checksums.yaml``.
    """

    archives_dir: str | None = None
    download: bool = True  # false: the archives must already be in archives_dir
    mirror: str | None = None  # a base URL replacing the official COCO host
    keep_archives: bool = True
    force: bool = False  # rebuild the raw root even if its fetch_info.json matches
    retries: int = 3
    timeout: float = 60.0
    checksums: str | None = None

    def __post_init__(self) -> None:
        _require(self.retries >= 0, "fetch.retries", self.retries, ">= 0")
        _require(self.timeout > 0, "fetch.timeout", self.timeout, "> 0")


@dataclass
class PreprocessSettings:
    """What the preprocess stage keeps of a fetched dataset."""

    splits: list[str] = field(default_factory=lambda: ["train", "val"])
    max_images: int | None = None  # the first N images of each split (sorted), e.g. for CI
    crop: list[int] | None = None  # Cityscapes: centre crop [H, W] of images and labels
    categories: list[str] | None = None  # COCO: keep only these category names
    crowd: str = "keep"  # COCO: keep or drop iscrowd=1 annotations
    drop_empty: bool = False  # COCO: drop images without non-crowd annotations
    link_images: bool = True  # hard-link unchanged images (copy where impossible)
    verify_images: bool = True  # decode every image fully (finds corrupt files)

    def __post_init__(self) -> None:
        _require(len(self.splits) > 0, "preprocess.splits", self.splits, "must not be empty")
        _require(self.max_images is None or self.max_images > 0, "preprocess.max_images",
                 self.max_images, "must be null or > 0")
        _require(self.crop is None or (len(self.crop) == 2 and min(self.crop) > 0),
                 "preprocess.crop", self.crop, "must be null or two positive sizes [H, W]")
        _require(self.crowd in ("keep", "drop"), "preprocess.crowd", self.crowd,
                 "must be 'keep' or 'drop'")


@dataclass
class EvaluateSettings:
    """Evaluation: multi-scale + flip inference, latency, what to keep for the report."""

    scales: list[float] = field(default_factory=lambda: [0.75, 1.0, 1.25, 1.5, 1.75])
    flip: bool = True
    window: list[int] | None = None  # sliding-window crop [H, W] (None: whole image)
    latency_reps: int = 10
    qualitative_images: int = 4
    export: bool = True  # Cityscapes result PNGs / COCO results JSON

    def __post_init__(self) -> None:
        _require(len(self.scales) > 0 and all(s > 0 for s in self.scales), "evaluate.scales",
                 self.scales, "must be a non-empty list of positive scales")
        _require(self.latency_reps > 0, "evaluate.latency_reps", self.latency_reps, "> 0")
        _require(self.qualitative_images >= 0, "evaluate.qualitative_images",
                 self.qualitative_images, ">= 0")


@dataclass
class ReportSettings:
    """Which paper tables the report mirrors (null: Tables 1, 2, 6, 7, plus 4 when run)."""

    tables: list[str] | None = None
    allow_missing: bool = False

    def __post_init__(self) -> None:
        if self.tables is None:
            return
        from dgmn.paper import paper_tables

        known = sorted(name for name, table in paper_tables().items()
                       if isinstance(table, dict) and "rows" in table)
        for table in self.tables:
            _require(table in known, "report.tables", table, f"must be one of {known}")


@dataclass
class PathSettings:
    raw: str = "data/raw"
    processed: str = "data/processed"
    runs: str = "runs"
    ray_storage: str = ".ray_storage"


@dataclass
class PipelineConfig:
    """The whole composed config (``conf/config.yaml`` with its groups)."""

    seed: int = 0
    seeds: list[int] = field(default_factory=lambda: [0])
    profile: str = "default"
    paths: PathSettings = field(default_factory=PathSettings)
    experiment: ExperimentMeta = field(default_factory=ExperimentMeta)
    data: DataSettings = field(default_factory=DataSettings)
    model: dict[str, Any] = field(default_factory=dict)
    model_overrides: dict[str, Any] = field(default_factory=dict)
    synthetic: dict[str, Any] = field(default_factory=dict)  # generator sizes per dataset name
    fetch: FetchSettings = field(default_factory=FetchSettings)
    preprocess: PreprocessSettings = field(default_factory=PreprocessSettings)
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)
    scaling: ScalingSettings = field(default_factory=ScalingSettings)
    tracking: TrackingSettings = field(default_factory=TrackingSettings)
    tune: TuneSettings = field(default_factory=TuneSettings)
    evaluate: EvaluateSettings = field(default_factory=EvaluateSettings)
    report: ReportSettings = field(default_factory=ReportSettings)

    def __post_init__(self) -> None:
        _require("name" in self.model, "model.name", None, "every model config needs a name")
        _require(len(self.seeds) > 0 and len(set(self.seeds)) == len(self.seeds)
                 and all(isinstance(s, int) and s >= 0 for s in self.seeds),
                 "seeds", self.seeds, "must be a non-empty list of distinct integers >= 0")
        _require(self.schedule.batch_size % max(1, self.scaling.num_workers) == 0,
                 "schedule.batch_size", self.schedule.batch_size,
                 f"must be divisible by scaling.num_workers={self.scaling.num_workers}")
        models = TASK_MODELS.get(self.data.task, ())
        _require(self.model["name"] in models, "model.name", self.model["name"],
                 f"{self.data.task} data needs a {self.data.task} model "
                 f"({', '.join(models) or 'none registered'})")

    @property
    def trained_as(self) -> str:
        """The experiment whose training this one is (itself unless it is an alias)."""
        return self.experiment.alias_of or self.experiment.name

    @property
    def run_name(self) -> str:
        """Stable name of this experiment's training run with ``seed`` (resume key, MLflow)."""
        return f"{self.trained_as.replace('/', '-')}-{self.profile}-seed{self.seed}"

    def with_seed(self, seed: int) -> PipelineConfig:
        """This config for the run of one of its ``seeds`` (``seed`` set, ``seeds`` kept)."""
        return dataclasses.replace(self, seed=seed)
