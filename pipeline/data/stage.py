"""The data stages, ``fetch`` and ``preprocess``, driven by the composed config.

Usage (what ``dvc.yaml`` runs)::

    python -m pipeline.data fetch cityscapes [profile=default] [data.source=real]
    python -m pipeline.data preprocess coco [profile=smoke] [preprocess.max_images=8]
    python -m pipeline.data fetch coco data.source=real fetch.archives_dir=/big/disk/coco_zips

The dataset directories are named by dataset, not by source (``data/raw/cityscapes``,
``data/processed/cityscapes``, :class:`pipeline.layout.Layout`), so switching ``data.source``
(or the profile) between the synthetic and the real data is one config value and DVC reruns
exactly the stages that read it. The profile's ``synthetic`` sizes the generated data;
``conf/fetch/`` says where real archives come from, ``conf/preprocess/`` what is kept of them.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.common.cli import Positional, parse_stage_args
from pipeline.common.errors import StageError
from pipeline.config import PipelineConfig, load_config
from pipeline.config.compose import PROJECT_ROOT
from pipeline.data.fetch import FetchConfig
from pipeline.data.fetch import run as fetch
from pipeline.data.preprocess import PreprocessConfig
from pipeline.data.preprocess import run as preprocess
from pipeline.layout import Layout

#: data config name → an experiment that reads it (its model fits the data's task).
EXPERIMENT_OF = {"cityscapes": "table1/dilated_fcn", "coco": "table2/maskrcnn"}
STAGES = ("fetch", "preprocess")


def _from_root(path: str | None, project_root: Path) -> Path | None:
    return None if path is None else project_root / Path(path).expanduser()


def fetch_config(cfg: PipelineConfig, project_root: Path = PROJECT_ROOT) -> FetchConfig:
    """The fetch request of ``cfg.data``: ``cfg.fetch`` (paths from the project root) and, for
    the synthetic data, the profile's sizes (``cfg.synthetic[<data.name>]``)."""
    settings = dataclasses.asdict(cfg.fetch)  # FetchConfig extends FetchSettings
    settings.update(
        archives_dir=(_from_root(cfg.fetch.archives_dir, project_root)
                      or project_root / "data" / "archives" / cfg.data.name),
        checksums=_from_root(cfg.fetch.checksums, project_root))
    fetch_cfg = FetchConfig(dataset=cfg.data.dataset,
                            root=Layout.of(cfg, project_root).raw_data,
                            progress=sys.stderr.isatty(), **settings)
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


def preprocess_config(cfg: PipelineConfig, project_root: Path = PROJECT_ROOT
                      ) -> PreprocessConfig:
    """The preprocess request of ``cfg.data``: ``cfg.preprocess`` from the raw to the
    processed root of the layout."""
    layout = Layout.of(cfg, project_root)
    return PreprocessConfig(dataset=cfg.data.dataset, raw_root=layout.raw_data,
                            out_root=layout.processed_data, progress=sys.stderr.isatty(),
                            **dataclasses.asdict(cfg.preprocess))


def main(argv: Sequence[str] | None = None) -> None:
    parsed = parse_stage_args(
        argv, prog="python -m pipeline.data", doc=__doc__,
        positionals=(Positional("stage", STAGES),
                     Positional("data", tuple(EXPERIMENT_OF), "a data config (conf/data/)")),
        implied=lambda args: [f"experiment={EXPERIMENT_OF[args.data]}"])
    if parsed is None:
        return
    cfg = load_config(parsed.overrides)
    if parsed.args.stage == "fetch":
        root = fetch(fetch_config(cfg))
    else:
        root = preprocess(preprocess_config(cfg))
    print(f"{parsed.args.stage}: {root}")
