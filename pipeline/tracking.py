"""MLflow tracking: the store location, run creation/resumption, logging from Ray workers.

The tracking URI comes from ``tracking.uri``, else ``$MLFLOW_TRACKING_URI``, else a SQLite
store in the project (``mlflow.db``, gitignored) given as an absolute URI, since Ray workers
run in their own directories. Runs are keyed by a tag (``dgmn.run_key``): a training that
resumes after an interruption keeps logging into its unfinished run.

Params and tags are redacted (:mod:`pipeline.common.redact`) before they reach MLflow: a
``tracking.uri`` of ``https://user:pass@host`` is logged as ``https://***@host``, while the client
connects with the real one; what MLflow prints (its run links) and its errors, which name the
URI, are redacted too (:func:`redacted_client_output`). Processes that open a fresh SQLite store
at the same moment wait for the one creating its tables (:func:`ensure_store`).
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pipeline.common.errors import StageError
from pipeline.common.locks import exclusive
from pipeline.common.redact import redact, redact_text
from pipeline.config.schema import PipelineConfig
from pipeline.layout import Layout

RUN_KEY_TAG = "dgmn.run_key"
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
    """Artifacts of the project's own SQLite store go to ``<project>/mlruns`` (gitignored)."""
    if cfg.tracking.uri or os.environ.get("MLFLOW_TRACKING_URI"):
        return None
    return Layout.of(cfg, project_root).mlflow_artifacts.as_uri()


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


def git_commit(project_root: Path) -> str:
    """The checked-out commit (``unknown`` outside a git checkout), ``+dirty`` if modified."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project_root, check=True,
                                capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=project_root, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


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

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        with redacted_client_output(self.uri):
            self._client().log_artifact(self.run_id, str(path), artifact_path)

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
    doing this at once gets there first)."""
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found:
        return found.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location)
    except MlflowException:
        found = client.get_experiment_by_name(name)  # created meanwhile by another process
        if found is None:
            raise
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
