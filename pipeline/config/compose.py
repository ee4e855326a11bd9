"""Compose ``conf/`` with Hydra's compose API and validate it against the schema.

Every stage calls :func:`load_config` with its command-line overrides, e.g.
``["experiment=table1/dgmn_da", "profile=smoke", "schedule.lr=0.02"]``; tests call it the same
way, so they exercise the real config files.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from pipeline.config.schema import ConfigError, PipelineConfig

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONF_DIR = PROJECT_ROOT / "conf"


def compose_raw(overrides: Sequence[str] = ()) -> DictConfig:
    """The composed Hydra config (no schema yet); Hydra's errors become :class:`ConfigError`."""
    try:
        with initialize_config_dir(str(CONF_DIR), version_base=None):
            return compose("config", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(f"conf/ with overrides {list(overrides)}: {exc}") from None


def with_experiment(overrides: Sequence[str], experiment: str) -> list[str]:
    """``overrides`` with its ``experiment=`` choice replaced by ``experiment``."""
    kept = [o for o in overrides if not o.lstrip("+~").startswith("experiment=")]
    return [*kept, f"experiment={experiment}"]


def _explicit_model_keys(overrides: Sequence[str]) -> set[str]:
    """``model.<key>`` names set on the command line: profiles must not override those."""
    keys = set()
    for item in overrides:
        path = item.lstrip("+~").split("=", 1)[0]
        if path.startswith("model."):
            keys.add(path.split(".")[1])
    return keys


def validate(raw: DictConfig, explicit: set[str] | frozenset[str] = frozenset()
             ) -> PipelineConfig:
    """Resolve interpolations, apply the profile's ``model_overrides`` (except to the model
    keys in ``explicit``, set by the user) and instantiate the schema."""
    try:
        container: dict[str, Any] = OmegaConf.to_container(raw, resolve=True)  # type: ignore[assignment]
        model = dict(container.get("model") or {})
        profile = (container.get("model_overrides") or {}).get(model.get("name"), {}) or {}
        model.update({k: v for k, v in profile.items() if k not in explicit})
        container["model"] = model
        merged = OmegaConf.merge(OmegaConf.structured(PipelineConfig), container)
        return OmegaConf.to_object(merged)  # type: ignore[return-value]
    except OmegaConfBaseException as exc:
        raise ConfigError(f"conf/: {' '.join(str(exc).split())}") from None


def load_config(overrides: Sequence[str] = ()) -> PipelineConfig:
    """Compose and validate; an experiment that is an alias of another (the same model and
    training reused by several paper tables) gets that experiment's settings and keeps its own
    table and row (:attr:`PipelineConfig.trained_as` names the run it shares)."""
    raw = compose_raw(overrides)
    alias = OmegaConf.select(raw, "experiment.alias_of")
    if alias:
        meta = raw.experiment
        raw = compose_raw(with_experiment(overrides, alias))
        if OmegaConf.select(raw, "experiment.alias_of"):
            raise ConfigError(f"experiment {alias!r} is itself an alias; aliases must point "
                              "to a real experiment")
        raw.experiment = meta  # the row it stands for; it trains as `alias`
    return validate(raw, _explicit_model_keys(overrides))


def as_dict(cfg: PipelineConfig) -> dict[str, Any]:
    """The validated config as plain JSON-able data (for Ray workers, MLflow, outputs)."""
    return dataclasses.asdict(cfg)


def from_dict(data: dict[str, Any]) -> PipelineConfig:
    """Inverse of :func:`as_dict` (re-validates; the model is taken as it is)."""
    return validate(OmegaConf.create(data), frozenset(data.get("model", {})))


def experiment_names(include_aliases: bool = False) -> list[str]:
    """Every experiment file under ``conf/experiment`` as ``table1/dgmn_da``-style names."""
    names = []
    for path in sorted((CONF_DIR / "experiment").rglob("*.yaml")):
        name = path.relative_to(CONF_DIR / "experiment").with_suffix("").as_posix()
        if include_aliases or "alias_of: null" in path.read_text():
            names.append(name)
    return names
