"""MLflow tracking: the store location, run creation/resumption, logging from Ray workers, the
logged model and dataset, and the evaluation's numbers in the training run.

The tracking URI comes from ``tracking.uri``, else ``$MLFLOW_TRACKING_URI``, else a SQLite
store in the project (``mlflow.db``, gitignored) given as an absolute URI, since Ray workers
run in their own directories. Runs are keyed by a tag (``dgmn.run_key``): a training that
resumes after an interruption keeps logging into its unfinished run, and the evaluate stage
finds the run of the training it scores (:func:`log_evaluation`). What a run holds and how to
compare one paper table's rows in the UI: ``docs/tracking.md``.

Params and tags are redacted (:mod:`pipeline.common.redact`) before they reach MLflow: a
``tracking.uri`` of ``https://user:pass@host`` is logged as ``https://***@host``, while the client
connects with the real one; what MLflow prints (its run links) and its errors, which name the
URI, are redacted too (:func:`redacted_client_output`). Processes that open a fresh SQLite store
at the same moment wait for the one creating its tables (:func:`ensure_store`).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

import dgmn
from pipeline.common.errors import StageError
from pipeline.common.locks import exclusive
from pipeline.common.redact import redact, redact_text
from pipeline.config.compose import CONF_DIR
from pipeline.config.schema import PipelineConfig
from pipeline.layout import Layout

log = logging.getLogger(__name__)

RUN_KEY_TAG = "dgmn.run_key"
#: The experiment tag MLflow 3's UI reads to open an experiment on its training runs ("Model
#: training") instead of its GenAI view (an empty traces page).
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
#: Where the evaluate stage's numbers go in the training run: ``eval/miou``, ``eval/bbox_AP`` …
EVAL_PREFIX = "eval/"
#: MLflow keeps at most 36 characters of a dataset digest (the full one is an input tag).
DATASET_DIGEST_CHARS = 32
#: What a logged model needs besides the ``dgmn`` code it carries (exact local versions).
MODEL_REQUIREMENTS = ("torch", "torchvision", "numpy")
#: How long a process waits for another one creating the same SQLite store (a migration takes
#: seconds to a minute on a loaded 2-core machine; waiting longer costs nothing).
STORE_CREATION_WAIT_S = 600.0


def tracking_uri(cfg: PipelineConfig, project_root: Path) -> str:
    if cfg.tracking.uri:
        return cfg.tracking.uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{Layout.of(cfg, project_root).mlflow_store}"


def artifact_location(cfg: PipelineConfig, project_root: Path) -> str | None:
    """Where a new experiment of a SQLite store keeps its artifacts: ``mlruns/`` beside the
    database (the project's own store: ``<project>/mlruns``, gitignored), as an absolute URI;
    MLflow's default would be ``./mlruns`` of whichever directory a process runs in. Other
    stores (a tracking server, a database server) choose their own (None)."""
    database = sqlite_path(tracking_uri(cfg, project_root))
    if database is None:
        return None
    return (database.parent / Layout.of(cfg, project_root).mlflow_artifacts.name).as_uri()


@contextlib.contextmanager
def redacted_client_output(uri: str) -> Iterator[None]:
    """Around MLflow client calls on ``uri``: what they print (``View run … at <uri>``) is
    passed on with credentials masked, and a failure becomes a :class:`StageError` naming the
    store by its redacted URI (MLflow's messages quote the URI as given)."""
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            yield
    except StageError:
        raise
    except Exception as exc:
        raise StageError(f"MLflow store {redact_text(uri)}: {type(exc).__name__}: "
                         f"{redact_text(str(exc))}") from None
    finally:
        sys.stdout.write(redact_text(printed.getvalue()))


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///…`` URI (None for other stores and in-memory)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri.removeprefix("sqlite:///").split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path).resolve()


def ensure_store(uri: str) -> None:
    """Open the store of ``uri`` once under a lock beside a SQLite database (``<db>.lock``):
    the first opening creates its tables (an Alembic migration), which fails in one of two
    processes doing it at the same moment (``duplicate column name``); the others wait and
    then find the tables there. Other stores (servers, databases) handle this themselves."""
    database = sqlite_path(uri)
    if database is None:
        return
    from mlflow import MlflowClient

    with exclusive(database.with_name(f"{database.name}.lock"), "creating the MLflow store",
                   wait=STORE_CREATION_WAIT_S):
        MlflowClient(uri).search_experiments(max_results=1)


def _git(project_root: Path, *args: str) -> str:
    """``git <args>`` in ``project_root``: its output, or ``""`` outside a checkout."""
    try:
        return subprocess.run(["git", *args], cwd=project_root, check=True, capture_output=True,
                              text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def git_commit(project_root: Path) -> str:
    """The checked-out commit (``unknown`` outside a git checkout), ``+dirty`` if modified."""
    commit = _git(project_root, "rev-parse", "HEAD")
    if not commit:
        return "unknown"
    dirty = _git(project_root, "status", "--porcelain", "--untracked-files=no")
    return commit + ("+dirty" if dirty else "")


def git_source(project_root: Path, entry_point: str) -> dict[str, str]:
    """MLflow's own source tags, which fill its UI's Source column: the entry point (e.g.
    ``pipeline/train.py``), type ``LOCAL``, and the checkout's commit, branch and remote URL
    where there are any (the URL's credentials are redacted like every tag)."""
    from mlflow.utils import mlflow_tags as names

    tags = {names.MLFLOW_SOURCE_NAME: entry_point, names.MLFLOW_SOURCE_TYPE: "LOCAL"}
    found = {names.MLFLOW_GIT_COMMIT: _git(project_root, "rev-parse", "HEAD"),
             names.MLFLOW_GIT_BRANCH: _git(project_root, "rev-parse", "--abbrev-ref", "HEAD"),
             names.MLFLOW_GIT_REPO_URL: _git(project_root, "config", "--get",
                                             "remote.origin.url")}
    tags.update({k: v for k, v in found.items() if v and v != "HEAD"})  # HEAD: detached
    return tags


def table_tags(cfg: PipelineConfig) -> dict[str, str]:
    """``table`` (the experiment's own paper table) and ``table.<table>`` = ``row <n>: <label>``
    for every table row this training is: its own and those of the experiments that reuse it
    (``alias_of``, e.g. Table 6 rows trained as Table 1 runs). One UI search then lists a
    table's rows: ``tags.`table.<table>` LIKE '%'`` (docs/tracking.md)."""
    meta = cfg.experiment
    rows = {meta.table: f"row {meta.row}: {meta.label}"}
    for path in sorted((CONF_DIR / "experiment").rglob("*.yaml")):
        other = (yaml.safe_load(path.read_text()) or {}).get("experiment") or {}
        if other.get("alias_of") == cfg.trained_as and other.get("table"):
            rows.setdefault(other["table"], f"row {other.get('row')}: {other.get('label')}")
    return {"table": meta.table, **{f"table.{table}": row for table, row in rows.items()}}


def model_requirements() -> list[str]:
    """Pinned requirements of a logged model (given, so MLflow does not infer them by loading
    the model in a subprocess)."""
    return [f"{name}=={importlib.metadata.version(name)}" for name in MODEL_REQUIREMENTS]


def example_array(example: Any) -> Any:
    """A task's example input as one float32 NumPy batch: a tensor as is, a list of image
    tensors (detection) stacked (torchvision's detectors take a batch tensor too)."""
    import torch

    batch = example if isinstance(example, torch.Tensor) else torch.stack(list(example))
    return batch.detach().cpu().float().numpy()


def flatten(prefix: str, value: Any) -> dict[str, Any]:
    """Nested config → ``{"schedule.lr": 0.01, ...}`` for MLflow params."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(f"{prefix}.{key}" if prefix else str(key), item))
        return out
    return {prefix: value}


class Tracker:
    """A thin wrapper over :class:`mlflow.MlflowClient` bound to one run (picklable)."""

    def __init__(self, uri: str, run_id: str) -> None:
        self.uri, self.run_id = uri, run_id

    def _client(self) -> Any:
        from mlflow import MlflowClient

        return MlflowClient(self.uri)

    def log_metrics(self, metrics: Mapping[str, Any], step: int) -> None:
        values = {k: float(v) for k, v in metrics.items()
                  if isinstance(v, int | float) and not isinstance(v, bool)}
        if values:
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            with redacted_client_output(self.uri):
                self._client().log_batch(self.run_id, metrics=[
                    Metric(key, value, now, step) for key, value in values.items()])

    def log_params(self, params: Mapping[str, Any]) -> None:
        """``params`` (flat; values as strings), credentials redacted."""
        from mlflow.entities import Param

        with redacted_client_output(self.uri):
            self._client().log_batch(self.run_id, params=[
                Param(key, str(value)) for key, value in redact(dict(params)).items()])

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        with redacted_client_output(self.uri):
            self._client().log_artifact(self.run_id, str(path), artifact_path)

    def log_dict(self, value: Mapping[str, Any], artifact_file: str) -> None:
        """``value`` as a JSON artifact at ``artifact_file`` (e.g. ``eval/metrics.json``)."""
        with redacted_client_output(self.uri):
            self._client().log_dict(self.run_id, dict(value), artifact_file)

    @contextlib.contextmanager
    def _active(self) -> Iterator[None]:
        """This run as MLflow's active run on this store, for the calls that exist only in
        MLflow's fluent API (logged models, dataset inputs); the global tracking URI is
        restored after."""
        import mlflow

        previous = mlflow.get_tracking_uri()
        mlflow.set_tracking_uri(self.uri)
        try:
            with redacted_client_output(self.uri):
                mlflow.start_run(run_id=self.run_id)
                try:
                    yield
                finally:
                    # Leave the run RUNNING: the stage ends it (finish) once all is logged.
                    mlflow.end_run(status="RUNNING")
        finally:
            mlflow.set_tracking_uri(previous)

    def log_model(self, model: Any, example: Any, registered_name: str | None = None) -> str:
        """Log ``model`` with ``mlflow.pytorch.log_model`` as ``model``: pickled, carrying the
        ``dgmn`` package's code (it loads without this checkout), pinned requirements, the
        signature inferred from the example and the model's output, and the example as input
        example. A model whose output is not one tensor (a detector's list of dicts) gets an
        input-only signature and no input example: MLflow's generic (pyfunc) serving, which
        checks an input example by predicting it, takes one output tensor only.
        ``registered_name``: also register it as a version of that model. Returns its URI."""
        import mlflow
        import torch
        from mlflow.models import infer_signature

        inputs = example_array(example)
        with torch.inference_mode():
            output = model.eval()(torch.from_numpy(inputs))
        outputs = output.numpy() if isinstance(output, torch.Tensor) else None
        with self._active():
            info = mlflow.pytorch.log_model(
                model, name="model", input_example=None if outputs is None else inputs,
                signature=infer_signature(inputs, outputs), serialization_format="pickle",
                code_paths=[str(Path(dgmn.__file__).parent)],
                pip_requirements=model_requirements(), registered_model_name=registered_name)
        return info.model_uri

    def log_dataset(self, name: str, root: Path, digest: str, context: str) -> None:
        """The dataset at ``root`` as an input of this run (``context``: ``training`` …), with
        its manifest digest as MLflow's digest (cut to what MLflow keeps) and in full as the
        input tag ``dgmn.manifest_digest``."""
        import mlflow
        from mlflow.data.dataset_source_registry import get_dataset_source_from_json
        from mlflow.data.meta_dataset import MetaDataset

        # A local directory, named by type: resolving a bare URI warns that two registered
        # sources (the same local one, for "" and "file://") could read it.
        source = get_dataset_source_from_json(json.dumps({"uri": root.resolve().as_uri()}),
                                              source_type="local")
        dataset = MetaDataset(source, name=name, digest=digest[:DATASET_DIGEST_CHARS])
        with self._active():
            mlflow.log_input(dataset, context=context, tags={"dgmn.manifest_digest": digest})

    def set_tags(self, tags: Mapping[str, str]) -> None:
        with redacted_client_output(self.uri):
            client = self._client()
            for key, value in redact(dict(tags)).items():
                client.set_tag(self.run_id, key, value)

    def finish(self, status: str = "FINISHED") -> None:
        with redacted_client_output(self.uri):
            self._client().set_terminated(self.run_id, status)


def _experiment_id(client: Any, name: str, artifact_location: str | None) -> str:
    """The id of experiment ``name``, created if missing (by whichever of several processes
    doing this at once gets there first), tagged :data:`EXPERIMENT_KIND`."""
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is None:
        try:
            return client.create_experiment(name, artifact_location=artifact_location,
                                            tags=EXPERIMENT_KIND)
        except MlflowException:
            found = client.get_experiment_by_name(name)  # created meanwhile by another process
            if found is None:
                raise
    for key, value in EXPERIMENT_KIND.items():  # an experiment created before the tag
        if found.tags.get(key) != value:
            client.set_experiment_tag(found.experiment_id, key, value)
    return found.experiment_id


def open_run(uri: str, experiment: str, run_name: str, run_key: str,
             params: Mapping[str, Any], tags: Mapping[str, str],
             parent_run_id: str | None = None,
             artifact_location: str | None = None) -> Tracker:
    """Reuse the unfinished run tagged ``run_key`` or create one; log params and tags.
    ``artifact_location`` is used when the experiment is created (absolute, so artifacts land
    in one place whichever directory a Ray worker runs in). Params and tags are redacted."""
    from mlflow import MlflowClient
    from mlflow.entities import Param
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

    all_tags = {RUN_KEY_TAG: run_key, MLFLOW_RUN_NAME: run_name, **redact(dict(tags))}
    if parent_run_id:
        all_tags[MLFLOW_PARENT_RUN_ID] = parent_run_id
    with redacted_client_output(uri):
        ensure_store(uri)
        client = MlflowClient(uri)
        experiment_id = _experiment_id(client, experiment, artifact_location)
        existing = client.search_runs(
            [experiment_id], filter_string=f"tags.`{RUN_KEY_TAG}` = '{run_key}' "
                                           "and attributes.status != 'FINISHED'",
            max_results=1)
        if existing:
            run_id = existing[0].info.run_id
            client.update_run(run_id, status="RUNNING")
        else:
            run_id = client.create_run(experiment_id, tags=all_tags,
                                       run_name=run_name).info.run_id
            flat = {k: str(v)[:6000] for k, v in flatten("", redact(dict(params))).items()}
            items = [Param(k, v) for k, v in flat.items()]
            for start in range(0, len(items), 100):
                client.log_batch(run_id, params=items[start:start + 100])
    tracker = Tracker(uri, run_id)
    tracker.set_tags(all_tags)
    return tracker


def evaluation_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The scalar numbers of an evaluation under their stable MLflow names: ``eval/<key>``
    (``eval/miou``, ``eval/miou_ms_flip``, ``eval/bbox_AP``, ``eval/added_params_m``,
    ``eval/added_gmacs_paper``, ``eval/latency_ms`` …)."""
    return {f"{EVAL_PREFIX}{key}": float(value) for key, value in metrics.items()
            if isinstance(value, int | float) and not isinstance(value, bool)}


def log_evaluation(cfg: PipelineConfig, project_root: Path, metrics: Mapping[str, Any]
                   ) -> str | None:
    """Log an evaluation into the MLflow run of the training it scores: the numbers as
    :func:`evaluation_metrics` (at the training's last iteration) and the whole result as the
    artifact ``eval/metrics.json``. The run is the latest one tagged with the run key in the
    training's ``metrics.json``. Returns its id; None when tracking is off or there is no such
    run (a training with tracking off; a warning says so)."""
    if not cfg.tracking.enabled:
        return None
    trained = Layout.of(cfg, project_root).train_dir / "metrics.json"
    try:
        training = json.loads(trained.read_text())
        key = training["run_key"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("%s: no run key (%s); the evaluation is not logged to MLflow", trained,
                    type(exc).__name__)
        return None
    uri = tracking_uri(cfg, project_root)
    from mlflow import MlflowClient

    with redacted_client_output(uri):
        ensure_store(uri)
        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name(cfg.tracking.experiment)
        runs = [] if experiment is None else client.search_runs(
            [experiment.experiment_id], filter_string=f"tags.`{RUN_KEY_TAG}` = '{key}'",
            order_by=["attributes.start_time DESC"], max_results=1)
    if not runs:
        log.warning("no MLflow run tagged %s=%s in experiment %r of %s; the evaluation is "
                    "not logged there", RUN_KEY_TAG, key, cfg.tracking.experiment,
                    redact_text(uri))
        return None
    tracker = Tracker(uri, runs[0].info.run_id)
    tracker.log_metrics(evaluation_metrics(metrics), step=int(training.get("iteration", 0)))
    tracker.log_dict(metrics, f"{EVAL_PREFIX}metrics.json")
    return tracker.run_id
