"""What a training result depends on, and the run key built from it.

A training run is identified by three digests (:class:`RunIdentity`):

- ``config``: the config values that shape training (:func:`shaping_config`);
- ``data``: the ``digest`` of the preprocessed dataset's ``manifest.json`` (a sha256 over every
  file's sha256, written by the preprocess stage);
- ``code``: :func:`code_digest`, the source bytes of the library and training code.

The run key ``<run_name>-<10 hex digits>`` names the Ray Train run directory (Ray resumes a run by
its name) and tags the MLflow run. Same config, data and code → same key → an interrupted run
resumes and a finished one is reused; any change → a new key → a new run. :func:`record_identity`
writes the components into the run directory, so a new run can say which one changed since the
previous run of the experiment (:func:`describe_run`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pipeline.common.errors import StageError
from pipeline.common.fs import atomic_write_json
from pipeline.common.redact import redact
from pipeline.config.compose import PROJECT_ROOT, as_dict
from pipeline.config.schema import PipelineConfig
from pipeline.layout import Layout

IDENTITY_FILE = "dgmn-run-identity.json"

#: Config sections that never reach the training loop: where files go, tracking, the sweep's own
#: settings, the experiment's table/row labels, the later stages, the data stages' settings and
#: the synthetic generator (their effect is in the data digest) and the profile's model
#: overrides (already merged into ``model``), and the list of seeds a stage runs (each run has
#: its own ``seed``, which is shaping).
_NOT_SHAPING_SECTIONS = ("paths", "tracking", "tune", "experiment", "evaluate", "report",
                         "synthetic", "fetch", "preprocess", "model_overrides", "seeds")
#: Keys that change how a run is executed, not what it computes: the cluster to join, retries,
#: the local Ray size, loader processes (batches are a function of seed and iteration,
#: :mod:`pipeline.training.batches`) and the in-memory cache of decoded images.
_NOT_SHAPING_KEYS = {"scaling": ("address", "max_failures", "ray_num_cpus"),
                     "data": ("loader_workers", "cache_decoded")}

#: Source files whose bytes shape a training result, relative to the project root: the library
#: except ``dgmn/viz`` (drawings only), and the training entry point, loop, tasks, config schema
#: and the validation inference it uses. Docs, ``conf/`` (its values are in the config digest),
#: the data stages (their output is in the data digest), evaluate and report are not in it.
CODE_SOURCES = ("dgmn/*.py", "dgmn/ops/**/*.py", "dgmn/nn/**/*.py", "dgmn/models/**/*.py",
                "dgmn/data/**/*.py", "dgmn/metrics/**/*.py", "pipeline/train.py",
                "pipeline/training/**/*.py", "pipeline/tasks/**/*.py",
                "pipeline/config/**/*.py", "pipeline/evaluation/**/*.py")


@dataclass(frozen=True)
class RunIdentity:
    """The digests a training result depends on, and the run key they give."""

    run_name: str
    config: str
    data: str
    code: str

    @property
    def key(self) -> str:
        combined = hashlib.sha256(f"{self.config}\n{self.data}\n{self.code}\n".encode())
        return f"{self.run_name}-{combined.hexdigest()[:10]}"

    def components(self) -> dict[str, str]:
        """``{"config", "data", "code"}`` (what ``metrics.json`` records as ``run_identity``)."""
        return {"config": self.config, "data": self.data, "code": self.code}


def _digest_json(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def shaping_config(cfg: PipelineConfig) -> dict[str, Any]:
    """The part of ``cfg`` that shapes a training result (seed, profile, data, model, schedule,
    scaling), without the sections and keys that only say where or how it runs."""
    data = {k: v for k, v in as_dict(cfg).items() if k not in _NOT_SHAPING_SECTIONS}
    for section, keys in _NOT_SHAPING_KEYS.items():
        data[section] = {k: v for k, v in data[section].items() if k not in keys}
    return data


def code_files(root: Path = PROJECT_ROOT) -> list[Path]:
    """The files of :data:`CODE_SOURCES` under ``root``, sorted by relative path."""
    found = {path for pattern in CODE_SOURCES for path in root.glob(pattern) if path.is_file()}
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def code_digest(root: Path = PROJECT_ROOT) -> str:
    """sha256 over ``"<sha256 of the bytes>  <relative path>\\n"`` of every :func:`code_files`
    file, in path order: bytes and paths only (no mtimes), so the same sources give the same
    digest on any machine and checkout. Covers the library (``dgmn/`` except ``viz``) and the
    training code (``pipeline/train.py``, ``training/``, ``tasks/``, ``config/``,
    ``evaluation/``): an edit there can change a trained model or its validation metrics. An
    edit elsewhere (docs, ``pipeline/report.py``, ``dgmn/viz``) does not change it."""
    h = hashlib.sha256()
    for path in code_files(root):
        h.update(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  "
                 f"{path.relative_to(root).as_posix()}\n".encode())
    return h.hexdigest()


def data_digest(cfg: PipelineConfig, project_root: Path) -> str:
    """The ``digest`` of the preprocessed dataset's ``manifest.json``; a missing or unreadable
    manifest is a :class:`StageError` (without it a changed dataset could not be told apart)."""
    manifest = Layout.of(cfg, project_root).manifest
    try:
        digest = json.loads(manifest.read_text())["digest"]
    except FileNotFoundError:
        raise StageError(f"{manifest}: not found; run the preprocess stage, which writes the "
                         "dataset's manifest") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StageError(f"{manifest}: no readable 'digest' ({type(exc).__name__}: {exc}); "
                         "run the preprocess stage again") from None
    if not isinstance(digest, str) or not digest:
        raise StageError(f"{manifest}: 'digest' must be a non-empty string, got {digest!r}")
    return digest


def run_identity(cfg: PipelineConfig, project_root: Path, code_root: Path = PROJECT_ROOT
                 ) -> RunIdentity:
    """The identity of ``cfg``'s training on the data under ``project_root`` with the code
    under ``code_root``."""
    return RunIdentity(run_name=cfg.run_name, config=_digest_json(shaping_config(cfg)),
                       data=data_digest(cfg, project_root), code=code_digest(code_root))


def run_key(cfg: PipelineConfig, project_root: Path) -> str:
    """The Ray run name and MLflow run tag of ``cfg``'s training (see the module docstring)."""
    return run_identity(cfg, project_root).key


def record_identity(run_dir: Path, identity: RunIdentity, cfg: PipelineConfig) -> None:
    """Write the identity (and the shaping config, credentials redacted) into ``run_dir``,
    once: a resumed run keeps its first record."""
    path = run_dir / IDENTITY_FILE
    if not path.exists():
        atomic_write_json(path, {**asdict(identity), "key": identity.key,
                                 "shaping_config": redact(shaping_config(cfg))})


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def _config_changes(before: Mapping[str, Any], after: Mapping[str, Any], limit: int = 4
                    ) -> list[str]:
    old, new = _flatten(before), _flatten(after)
    changed = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(old.keys() | new.keys())
               if old.get(k) != new.get(k)]
    return changed[:limit] + ([f"{len(changed) - limit} more"] if len(changed) > limit else [])


def _earlier_records(storage: Path, identity: RunIdentity) -> Iterable[tuple[Path, dict]]:
    for path in storage.glob(f"{identity.run_name}-*/{IDENTITY_FILE}"):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if record.get("run_name") == identity.run_name and record.get("key") != identity.key:
            yield path, record


def describe_run(storage: Path, identity: RunIdentity, cfg: PipelineConfig) -> str:
    """One line for the log: whether ``identity``'s run exists under ``storage`` (it resumes or
    is reused) or is new, and then what changed since the latest earlier run of the same
    experiment (config keys, data manifest digest, code digest)."""
    if (storage / identity.key / IDENTITY_FILE).exists():
        return (f"run {identity.key}: config, data and code match its record; resuming it "
                "(a finished run is reused)")
    earlier = sorted(_earlier_records(storage, identity), key=lambda item: item[0].stat().st_mtime)
    if not earlier:
        return f"run {identity.key}: new (no earlier run of {identity.run_name} in {storage})"
    _, record = earlier[-1]
    reasons = []
    if record.get("config") != identity.config:
        changes = _config_changes(record.get("shaping_config") or {},
                                  redact(shaping_config(cfg)))
        reasons.append(f"config changed ({'; '.join(changes) or 'digest differs'})")
    if record.get("data") != identity.data:
        reasons.append(f"data changed (manifest digest {str(record.get('data'))[:12]} -> "
                       f"{identity.data[:12]})")
    if record.get("code") != identity.code:
        reasons.append(f"code changed (code digest {str(record.get('code'))[:12]} -> "
                       f"{identity.code[:12]})")
    return (f"run {identity.key}: new, not reusing run {record.get('key')}: "
            f"{', '.join(reasons) or 'its record differs'}")
