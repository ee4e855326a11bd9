"""The DVC pipeline: the DAG and params agree with the configs; the metrics and plots files
it declares are the layout's and git sees them; the smoke profile runs end to end (interrupted
during training, then resumed without redoing finished stages), its report has every Table 1
row (finite numbers for the rows it trains), and `dvc metrics show|diff`, `dvc exp show` and
`dvc plots show|diff` give each experiment's evaluation; after it, each edit of a table
changes exactly the stages that read it (an exact graph); bad configs stop the first stage."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from pipeline.config import load_config
from pipeline.config.compose import PROJECT_ROOT
from pipeline.evaluation.records import per_class, training_curve, validation_curve
from pipeline.layout import PER_CLASS, TRAINING_CURVE, VALIDATION_CURVE, Layout, RunDirs

DVC = str(Path(sys.executable).with_name("dvc"))


def _params() -> dict:
    return yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())


def test_params_train_exactly_what_the_default_report_needs():
    params = _params()
    tables = load_config([f"profile={params['profile']}"]).report.tables
    needed = set()
    for path in (PROJECT_ROOT / "conf" / "experiment").rglob("*.yaml"):
        name = path.relative_to(PROJECT_ROOT / "conf" / "experiment").with_suffix("").as_posix()
        cfg = load_config([f"experiment={name}"])
        if cfg.experiment.table in tables:
            needed.add((cfg.trained_as, cfg.data.name))
    listed = {(item["name"], item["data"]) for item in params["train"].values()}
    assert listed == needed
    for key, item in params["train"].items():
        assert key == item["name"].replace("/", "-")


def test_dag_is_valid_and_every_stage_is_listed():
    result = subprocess.run([DVC, "stage", "list"], cwd=PROJECT_ROOT, capture_output=True,
                            text=True, check=True, env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    stages = {line.split()[0] for line in result.stdout.splitlines() if line.strip()}
    expected = {"fetch@cityscapes", "fetch@coco", "preprocess@cityscapes", "preprocess@coco",
                "tune", "report"}
    expected |= {f"{kind}@{key}" for key in _params()["train"] for kind in ("train", "evaluate")}
    assert stages == expected


def _stage_files(stage: str, kind: str, profile: str, name: str) -> dict[str, dict]:
    """``{path: its properties}`` of a foreach stage's ``kind`` (metrics, plots) in dvc.yaml,
    for one profile and experiment."""
    spec = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"][stage]["do"]
    files = {}
    for entry in spec.get(kind, []):
        ((path, props),) = entry.items()
        files[path.replace("${profile}", profile).replace("${item.name}", name)] = props
    return files


def test_declared_metrics_and_plots_are_the_layouts_files_and_git_sees_them():
    """dvc.yaml names the files the stages write (pipeline/layout.py), uncached, with x/y
    fields the records have; git does not ignore them (``dvc exp`` commits them) but does
    ignore the stages' cached outputs."""
    cfg = load_config(["experiment=table1/dgmn_da", "profile=smoke"])
    layout = Layout.of(cfg, PROJECT_ROOT)

    def relative(path: Path) -> str:
        return path.relative_to(PROJECT_ROOT).as_posix()

    metrics = _stage_files("evaluate", "metrics", "smoke", cfg.trained_as)
    assert list(metrics) == [relative(layout.metrics_file)]
    records = {TRAINING_CURVE: training_curve([{"iteration": 1, "loss": 2.0, "lr": 0.1}]),
               VALIDATION_CURVE: validation_curve([{"iteration": 2, "miou": 3.0}], "miou"),
               PER_CLASS: per_class("iou", ["road"], [4.0])}
    plots = {**_stage_files("train", "plots", "smoke", cfg.trained_as),
             **_stage_files("evaluate", "plots", "smoke", cfg.trained_as)}
    assert sorted(plots) == sorted(relative(layout.plots_dir / name) for name in records)
    for path, props in {**metrics, **plots}.items():
        assert props["cache"] is False, path
    for path, props in plots.items():
        fields = set(records[Path(path).name][0])
        assert {props["x"], props["y"]} <= fields, path
        assert props["template"] in {"linear", "bar_horizontal"} and props["title"], path
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", *metrics, *plots,
         relative(layout.train_dir / "model.pt"), relative(layout.eval_dir / "walks.npz")],
        cwd=PROJECT_ROOT, capture_output=True, text=True).stdout.split()
    assert ignored == [relative(layout.train_dir / "model.pt"),
                       relative(layout.eval_dir / "walks.npz")]


def _dvc_json(repo: Path, env: dict[str, str], *args: str) -> object:
    """The ``--json`` output of a dvc command in ``repo`` (exit 0 required)."""
    result = subprocess.run([DVC, *args, "--json"], cwd=repo, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, (args, result.stderr[-3000:])
    return json.loads(result.stdout)


def _check_dvc_comparisons(repo: Path, env: dict[str, str], keys: list[str]) -> None:
    """`dvc metrics show|diff`, `dvc exp show` and `dvc plots show|diff` give each
    experiment's evaluation, equal to the files the stages wrote."""
    runs = RunDirs.of(repo / "runs", "smoke")
    names = {key: key.replace("-", "/", 1) for key in keys}  # table1-aspp -> table1/aspp
    paths = {key: runs.metrics(name).relative_to(repo).as_posix() for key, name in names.items()}
    written = {key: json.loads(runs.metrics(name).read_text()) for key, name in names.items()}
    for values in written.values():  # numbers only: one DVC column per score
        assert values["miou"] >= 0 and all(isinstance(v, float) for v in values.values())

    shown = _dvc_json(repo, env, "metrics", "show")[""]["data"]
    assert {key: shown[path]["data"] for key, path in paths.items()} == written

    # the experiment `dvc exp run` recorded holds the same numbers (its commit has the files)
    rows = [run for commit in _dvc_json(repo, env, "exp", "show")
            for exp in commit.get("experiments") or [] for run in exp["revs"] if run["data"]]
    latest = max(rows, key=lambda run: run["data"]["timestamp"])
    recorded = latest["data"]["metrics"]
    assert {key: recorded[path]["data"] for key, path in paths.items()} == written
    diff = _dvc_json(repo, env, "metrics", "diff", "HEAD", latest["name"])
    for key, path in paths.items():
        assert diff[path]["miou"] == {"old": None, "new": written[key]["miou"]}, key

    plots = _dvc_json(repo, env, "plots", "show")["data"]
    for key, name in names.items():
        def values(file: str) -> list[dict]:
            (plot,) = plots[(runs.plots(name) / file).relative_to(repo).as_posix()]  # noqa: B023
            return [{k: v for k, v in r.items() if k != "rev"}
                    for r in plot["content"]["data"]["values"]]
        classes = values(PER_CLASS)
        assert classes == json.loads((runs.plots(name) / PER_CLASS).read_text())
        # mIoU is the mean of the per-class IoUs (classes never seen have none)
        ious = [r["value"] for r in classes if r["value"] is not None]
        assert sum(ious) / len(ious) == pytest.approx(written[key]["miou"])
        history = json.loads((runs.train(name, 0) / "history.json").read_text())
        assert [r["loss"] for r in values(TRAINING_CURVE)] == [r["loss"] for r in
                                                                 history["train"]]
        assert [(r["iteration"], r["value"]) for r in values(VALIDATION_CURVE)] == \
            [(r["iteration"], r["miou"]) for r in history["val"]]
    compared = _dvc_json(repo, env, "plots", "diff", "HEAD", latest["name"])["data"]
    per_class_plot = (runs.plots(names[keys[0]]) / PER_CLASS).relative_to(repo).as_posix()
    (plot,) = compared[per_class_plot]
    assert plot["revisions"] == [latest["name"]]  # HEAD has no evaluation yet


def _copy_project(dest: Path) -> None:
    """The tracked files of the project (what a fresh clone holds), as a new git repo."""
    files = subprocess.run(["git", "ls-files"], cwd=PROJECT_ROOT, capture_output=True,
                           text=True, check=True).stdout.splitlines()
    for name in files:
        source = PROJECT_ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)


#: a git identity for the commits of the copy and of ``dvc exp run`` (CI may have none)
GIT_IDENTITY = {"GIT_AUTHOR_NAME": "dgmn tests", "GIT_AUTHOR_EMAIL": "tests@dgmn.invalid",
                "GIT_COMMITTER_NAME": "dgmn tests", "GIT_COMMITTER_EMAIL": "tests@dgmn.invalid"}


#: The Table 1 rows the smoke pipeline trains: the baseline, a context module and DGMN (every
#: row builds and trains in test_config/test_tables_5_8; three keep this test in CI's budget).
SMOKE_ROWS = ("table1/dilated_fcn", "table1/dgmn_da")  # one finished, one interrupted


def _table1_params(repo: Path) -> list[str]:
    """params.yaml of the copy: the default profile, :data:`SMOKE_ROWS`; the smoke report
    shows the other Table 1 rows as missing; committed (``dvc exp run`` needs a commit to base
    the experiment on)."""
    train = {name.replace("/", "-"): {"name": name, "data": "cityscapes"} for name in SMOKE_ROWS}
    (repo / "params.yaml").write_text(yaml.safe_dump({"profile": "default", "train": train}))
    _replace("conf/report/smoke.yaml", "allow_missing: false", "allow_missing: true")(repo)
    env = {**os.environ, **GIT_IDENTITY}
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True, env=env)
    subprocess.run(["git", "commit", "-qm", "project"], cwd=repo, check=True, env=env)
    return sorted(train)


def _recorded_checkpoint(storage: Path, key: str) -> bool:
    """Whether Ray Train's run state for experiment ``key`` lists a checkpoint."""
    for snapshot in storage.glob(f"{key}-smoke-seed0-*/checkpoint_manager_snapshot.json"):
        try:
            if json.loads(snapshot.read_text()).get("latest_checkpoint_result"):
                return True
        except (OSError, ValueError):  # being written
            pass
    return False


def _append(path: str, text: str) -> Callable[[Path], None]:
    def edit(repo: Path) -> None:
        with (repo / path).open("a") as handle:
            handle.write(text)
    return edit


def _replace(path: str, old: str, new: str) -> Callable[[Path], None]:
    def edit(repo: Path) -> None:
        content = (repo / path).read_text()
        assert old in content, (path, old)
        (repo / path).write_text(content.replace(old, new, 1))
    return edit


def _edits(keys: list[str]) -> dict[str, tuple[Callable[[Path], None], set[str]]]:
    """Edit → the stages of the smoke pipeline (Table 1 experiments ``keys``) that read it."""
    train_eval = {f"{kind}@{key}" for key in keys for kind in ("train", "evaluate")}
    both = ("cityscapes", "coco")
    return {
        "a file of dgmn/nn": (_append("dgmn/nn/dgmn.py", "\n# edited\n"), train_eval | {"tune"}),
        "an evaluate setting": (_replace("conf/evaluate/smoke.yaml", "latency_reps: 2",
                                         "latency_reps: 3"), {f"evaluate@{k}" for k in keys}),
        "a report setting": (_replace("conf/report/smoke.yaml", "allow_missing: true",
                                      "allow_missing: false"), {"report"}),
        "a tune setting": (_replace("conf/tune/smoke.yaml", "groups: [2]", "groups: [4]"),
                           {"tune"}),
        "a fetch setting": (_replace("conf/fetch/default.yaml", "retries: 3", "retries: 4"),
                            {f"fetch@{d}" for d in both}),
        "a preprocess setting": (_replace("conf/preprocess/default.yaml", "crowd: keep",
                                          "crowd: drop"), {f"preprocess@{d}" for d in both}),
        "one experiment's φ": (_replace("conf/experiment/table1/dgmn_da.yaml", "rates: [1]",
                                        "rates: [1, 2]"),
                               {"train@table1-dgmn_da", "evaluate@table1-dgmn_da", "report"}),
        # train draws its curves and tune its figures with dgmn.viz (the run key ignores it)
        "dgmn/viz": (_append("dgmn/viz/colorize.py", "\n# edited\n"),
                     train_eval | {"tune", "report"}),
    }


def _changed_after(repo: Path, env: dict[str, str], edit: Callable[[Path], None]) -> set[str]:
    """The stages ``dvc status`` reports as changed after ``edit`` (undone afterwards)."""
    backup = {p: p.read_bytes() for top in ("dgmn", "conf") for p in (repo / top).rglob("*")
              if p.is_file()}
    try:
        edit(repo)
        result = subprocess.run([DVC, "status", "--json"], cwd=repo, env=env,
                                capture_output=True, text=True, timeout=300)
    finally:
        for path, content in backup.items():
            path.write_bytes(content)
    assert result.returncode == 0, result.stderr[-3000:]
    return set(json.loads(result.stdout or "{}"))


@pytest.mark.slow
@pytest.mark.cluster
@pytest.mark.xdist_group("loopback_ray")  # one loopback Ray cluster at a time
def test_smoke_pipeline_interrupted_then_resumed_reports_every_row(tmp_path, loopback_ray):
    """``dvc exp run -S profile=smoke`` (the documented way to switch profiles), interrupted
    during training; ``dvc exp run`` finishes it without redoing finished stages; the report
    has every Table 1 row (those not trained marked missing); ``dvc repro`` then has nothing to
    do; the experiment is recorded with its parameter; and the DVC graph is exact: for a table
    of edits, ``dvc status`` reports exactly the stages that read what was edited."""
    repo = tmp_path / "repo"
    _copy_project(repo)
    keys = _table1_params(repo)
    cluster = loopback_ray(nodes=("127.0.0.2",), cpus=2)
    env = {**cluster.env, **GIT_IDENTITY, "RAY_ADDRESS": cluster.address,
           "DVC_NO_ANALYTICS": "1", "PYTHONPATH": str(repo),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)

    # First run: switch the profile with -S, interrupt it (Ctrl-C) while the second
    # experiment trains.
    log = repo / "first.log"
    with log.open("w") as out:
        first = subprocess.Popen([DVC, "exp", "run", "-S", "profile=smoke"], cwd=repo,
                                 env=env, stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True)
        deadline = time.monotonic() + 600
        # interrupt once Ray Train has recorded the experiment's first checkpoint (iteration
        # 2 of 4) in its run state: a checkpoint reported a moment before Ctrl-C may not be
        # recorded yet, and then there is nothing to resume from
        while not _recorded_checkpoint(repo / ".ray_storage", keys[1]):
            assert first.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the first run never reached training"
            time.sleep(0.2)
        os.killpg(first.pid, signal.SIGINT)
        first.wait(timeout=120)
    assert first.returncode != 0
    assert (repo / "runs" / "smoke" / "train" / "table1" / keys[0].split("-", 1)[1]
            / "seed0" / "metrics.json").is_file()

    assert yaml.safe_load((repo / "params.yaml").read_text())["profile"] == "smoke"

    # Second run: finishes, reusing the stages the first run completed.
    second = subprocess.run([DVC, "exp", "run"], cwd=repo, env=env, capture_output=True,
                            text=True, timeout=1200)
    output = second.stdout + second.stderr
    assert second.returncode == 0, output[-5000:]
    for stage in ("fetch@cityscapes", "preprocess@cityscapes", f"train@{keys[0]}"):
        assert f"Running stage '{stage}'" not in output, stage
    assert f"Running stage 'train@{keys[1]}'" in output  # the interrupted one, resumed
    # from its Ray Train checkpoint: iteration 2, or 4 when Ray's graceful abort let the
    # worker finish its last iterations before the driver stopped
    assert re.search(r"resumed from iteration [24]\b", output), output[-5000:]

    summary = json.loads((repo / "reports" / "smoke" / "summary.json").read_text())
    rows = [row for table in summary["tables"].values() for row in table["rows"]]
    assert list(summary["tables"]) == ["table1_cityscapes_val_ablation"]
    trained = [row for row in rows if row["experiment"] in SMOKE_ROWS]
    assert len(rows) == 7 and len(trained) == len(SMOKE_ROWS)
    assert all(row["finite"] and row["status"] == "ok" for row in trained)
    assert {row["status"] for row in rows if row not in trained} == {"missing"}
    # the run wrote only declared outputs: the README (tracked, not a DVC output) is as
    # committed; the one tracked file that differs is params.yaml, which `dvc exp run -S` sets
    assert (repo / "README.md").read_bytes() == (PROJECT_ROOT / "README.md").read_bytes()
    assert (repo / "reports" / "smoke" / "README_results.md").is_file()
    modified = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                              cwd=repo, capture_output=True, text=True, check=True).stdout
    assert [line[3:] for line in modified.splitlines()] == ["params.yaml"], modified

    # A third run with nothing changed does nothing.
    third = subprocess.run([DVC, "repro"], cwd=repo, env=env, capture_output=True, text=True,
                           timeout=300)
    assert third.returncode == 0 and "Running stage" not in third.stdout + third.stderr
    assert (repo / "README.md").read_bytes() == (PROJECT_ROOT / "README.md").read_bytes()

    # The experiment is recorded, with the profile it ran and its report among its outputs.
    shown = subprocess.run([DVC, "exp", "show", "--json"], cwd=repo, env=env,
                           capture_output=True, text=True, timeout=300, check=True)
    experiments = [exp for commit in json.loads(shown.stdout)
                   for exp in commit.get("experiments") or []]
    params = [run["data"]["params"]["params.yaml"]["data"]
              for exp in experiments for run in exp["revs"]]
    assert any(p["profile"] == "smoke" for p in params), shown.stdout[-3000:]

    # Runs are compared where users compare them: DVC's metrics, experiments and plots.
    _check_dvc_comparisons(repo, env, keys)

    # The graph is exact: after each edit, `dvc status` reports the stages that read it.
    for edit, (apply, expected) in _edits(keys).items():
        assert _changed_after(repo, env, apply) == expected, edit


def test_missing_inputs_and_unknown_tables_stop_a_stage_with_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.evaluate", "experiment=table1/dgmn_da",
         "profile=smoke", f"paths.runs={tmp_path}"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "no trained model" in result.stderr
    # an unknown table fails the first stage already (every stage validates the whole config)
    result = subprocess.run([sys.executable, "-m", "pipeline.data", "fetch", "cityscapes",
                             "profile=smoke", "report.tables=[table9]",
                             f"paths.raw={tmp_path / 'raw'}"], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "report.tables='table9'" in result.stderr
    assert not (tmp_path / "raw").exists()
    assert "Traceback" not in result.stderr
