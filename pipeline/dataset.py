"""Stages ``fetch`` and ``preprocess`` driven by the Hydra config (what ``dvc.yaml`` runs).

Usage::

    python -m pipeline.dataset fetch cityscapes [profile=default] [data.source=real]
    python -m pipeline.dataset preprocess coco [profile=smoke]

The dataset directories are named by dataset, not by source (``data/raw/cityscapes``,
``data/processed/cityscapes``), so switching ``data.source`` (or the profile) between the
synthetic and the real data is one config value and DVC reruns exactly the stages that read
it. ``synthetic`` (per dataset, in the profile) sizes the generated data; ``preprocess``
(``max_images``, ``crop``) makes CI subsets.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.common.cli import Positional, parse_stage_args
from pipeline.common.errors import StageError, run_stage
from pipeline.config import PipelineConfig, load_config
from pipeline.config.compose import PROJECT_ROOT
from pipeline.fetch import FetchConfig
from pipeline.fetch import run as fetch
from pipeline.preprocess import PreprocessConfig
from pipeline.preprocess import run as preprocess

#: data config name → an experiment that reads it (its model fits the data's task).
EXPERIMENT_OF = {"cityscapes": "table1/dilated_fcn", "coco": "table2/maskrcnn"}


def raw_root(cfg: PipelineConfig, project_root: Path = PROJECT_ROOT) -> Path:
    return project_root / cfg.paths.raw / cfg.data.name


def processed_root(cfg: PipelineConfig, project_root: Path = PROJECT_ROOT) -> Path:
    return project_root / cfg.paths.processed / cfg.data.name


def fetch_config(cfg: PipelineConfig, project_root: Path = PROJECT_ROOT) -> FetchConfig:
    """The fetch request of ``cfg.data`` (synthetic sizes from ``cfg.synthetic``)."""
    fetch_cfg = FetchConfig(dataset=cfg.data.dataset, root=raw_root(cfg, project_root),
                            progress=sys.stderr.isatty())
    if cfg.data.source == "synthetic":
        field = cfg.data.dataset  # FetchConfig names its generators by dataset
        generator = getattr(fetch_cfg, field)
        sizes = cfg.synthetic.get(cfg.data.name, {}) or {}
        known = {f.name for f in dataclasses.fields(generator)}
        unknown = sorted(set(sizes) - known)
        if unknown:
            raise StageError(f"config key synthetic.{cfg.data.name} has unknown field(s) "
                             f"{unknown}; known: {sorted(known)}")
        setattr(fetch_cfg, field, dataclasses.replace(generator, **sizes))
    return fetch_cfg


def main(argv: Sequence[str] | None = None) -> None:
    parsed = parse_stage_args(
        argv, prog="python -m pipeline.dataset", doc=__doc__,
        positionals=(Positional("stage", ("fetch", "preprocess")),
                     Positional("data", tuple(EXPERIMENT_OF), "a data config (conf/data/)")),
        implied=lambda args: [f"experiment={EXPERIMENT_OF[args.data]}"])
    if parsed is None:
        return
    stage = parsed.args.stage
    cfg = load_config(parsed.overrides)
    if stage == "fetch":
        root = fetch(fetch_config(cfg))
    else:
        root = preprocess(PreprocessConfig(
            dataset=cfg.data.dataset, raw_root=raw_root(cfg), out_root=processed_root(cfg),
            max_images=cfg.data.subset_images, progress=sys.stderr.isatty()))
    print(f"{stage}: {root}")


if __name__ == "__main__":
    sys.exit(run_stage(main, None))
