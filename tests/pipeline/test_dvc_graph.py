"""The DVC graph is exact: each stage declares the code it imports and the config it reads, no
more, so an edit reruns exactly the stages it can change (never a training for an evaluate or
report setting)."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.config.compose import PROJECT_ROOT

DVC = str(Path(sys.executable).with_name("dvc"))
#: dvc.yaml stage → the module its command runs.
STAGE_MODULES = {"fetch": "pipeline.data.__main__", "preprocess": "pipeline.data.__main__",
                 "train": "pipeline.train", "evaluate": "pipeline.evaluate",
                 "tune": "pipeline.tune", "report": "pipeline.report"}
CODE_ROOTS = ("dgmn", "pipeline")

_LIST_IMPORTS = """
import importlib, json, os, sys
root = os.path.realpath(sys.argv[2])
importlib.import_module(sys.argv[1])
files = set()
for module in list(sys.modules.values()):
    path = getattr(module, "__file__", None)
    if path and os.path.isabs(path) and os.path.realpath(path).startswith(root + os.sep):
        files.add(os.path.relpath(os.path.realpath(path), root))
print(json.dumps(sorted(files)))
"""


@functools.cache
def imported_project_files(module: str) -> frozenset[str]:
    """Project source files (``dgmn/…``, ``pipeline/…``) in ``sys.modules`` after a fresh
    interpreter imports ``module``."""
    out = subprocess.run([sys.executable, "-c", _LIST_IMPORTS, module, str(PROJECT_ROOT)],
                         cwd=PROJECT_ROOT, capture_output=True, text=True, check=True).stdout
    return frozenset(f for f in json.loads(out) if f.split("/")[0] in CODE_ROOTS)


def declared_code(stage: str) -> set[str]:
    """The code deps (under ``dgmn/`` or ``pipeline/``, ``.py`` files or packages) of a
    dvc.yaml stage."""
    spec = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"][stage]
    deps = (spec.get("do") or spec)["deps"]
    return {d for d in deps if d.split("/")[0] in CODE_ROOTS
            and (d.endswith(".py") or (PROJECT_ROOT / d).is_dir())}


def _covers(dep: str, path: str) -> bool:
    return path == dep or path.startswith(dep.rstrip("/") + "/")


@pytest.mark.parametrize("stage", sorted(STAGE_MODULES))
def test_stage_declares_exactly_the_code_it_imports(stage):
    imported = imported_project_files(STAGE_MODULES[stage])
    declared = declared_code(stage)
    undeclared = sorted(f for f in imported if not any(_covers(d, f) for d in declared))
    assert not undeclared, f"{stage} imports {undeclared} but dvc.yaml does not declare them"
    unused = sorted(d for d in declared if not any(_covers(d, f) for f in imported))
    assert not unused, f"{stage} declares {unused} but does not import them"


# --- `dvc status` after an edit: exactly the stages that read it ----------------------------

PROFILE = "smoke"
EXPERIMENTS = {"table1-dilated_fcn": {"name": "table1/dilated_fcn", "data": "cityscapes"},
               "table1-dgmn_da": {"name": "table1/dgmn_da", "data": "cityscapes"}}
ENV = {**os.environ, "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "dgmn tests",
       "GIT_AUTHOR_EMAIL": "tests@dgmn.invalid", "GIT_COMMITTER_NAME": "dgmn tests",
       "GIT_COMMITTER_EMAIL": "tests@dgmn.invalid"}


def _dvc(repo: Path, *args: str) -> str:
    result = subprocess.run([DVC, *args], cwd=repo, capture_output=True, text=True, env=ENV)
    assert result.returncode == 0, f"dvc {' '.join(args)}: {result.stderr or result.stdout}"
    return result.stdout


@pytest.fixture(scope="module")
def recorded_repo(tmp_path_factory) -> Path:
    """A copy of the project whose dvc.lock records every stage as up to date.

    The outputs are placeholders recorded with ``dvc commit``: what ``dvc status`` compares is
    the deps' hashes, so no stage has to run (the smoke pipeline itself runs in
    ``test_dvc.py``)."""
    repo = tmp_path_factory.mktemp("graph") / "repo"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=PROJECT_ROOT,
                           capture_output=True, text=True, check=True).stdout.splitlines()
    for name in files:
        source = PROJECT_ROOT / name
        if source.is_file() and not name.startswith((".dvc/tmp", ".dvc/cache")):
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            (repo / name).write_bytes(source.read_bytes())
    (repo / "params.yaml").write_text(yaml.safe_dump({"profile": PROFILE,
                                                      "train": EXPERIMENTS}))
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True, env=ENV)
    if not (repo / ".dvc").is_dir():
        _dvc(repo, "init", "-q")
    for out in ("data/raw/cityscapes", "data/raw/coco2017", "data/processed/cityscapes",
                "data/processed/coco2017", f"runs/{PROFILE}/tune", f"reports/{PROFILE}",
                *(f"runs/{PROFILE}/{kind}/{item['name']}" for item in EXPERIMENTS.values()
                  for kind in ("train", "eval"))):
        (repo / out).mkdir(parents=True, exist_ok=True)
        (repo / out / "placeholder").write_text(out)
    _dvc(repo, "commit", "-f", "-q")
    assert _changed(repo) == set()
    return repo


def _changed(repo: Path) -> set[str]:
    """The stages ``dvc status`` reports as changed."""
    return set(json.loads(_dvc(repo, "status", "--json") or "{}"))


def _append(path: str, text: str):
    def edit(repo: Path) -> None:
        with (repo / path).open("a") as handle:
            handle.write(text)
    return edit


def _replace(path: str, old: str, new: str):
    def edit(repo: Path) -> None:
        content = (repo / path).read_text()
        assert old in content, (path, old)
        (repo / path).write_text(content.replace(old, new, 1))
    return edit


TRAIN_EVAL = {f"{kind}@{key}" for key in EXPERIMENTS for kind in ("train", "evaluate")}
EDITS = {
    "a file of dgmn/nn": (_append("dgmn/nn/dgmn.py", "\n# edited\n"),
                          TRAIN_EVAL | {"tune"}),
    "an evaluate setting": (_replace(f"conf/evaluate/{PROFILE}.yaml", "latency_reps: 2",
                                     "latency_reps: 3"),
                            {f"evaluate@{key}" for key in EXPERIMENTS}),
    "a report setting": (_replace(f"conf/report/{PROFILE}.yaml", "allow_missing: false",
                                  "allow_missing: true"), {"report"}),
    "a tune setting": (_replace(f"conf/tune/{PROFILE}.yaml", "groups: [2]", "groups: [4]"),
                       {"tune"}),
    "one experiment's φ": (_replace("conf/experiment/table1/dgmn_da.yaml", "rates: [1]",
                                    "rates: [1, 2]"),
                           {"train@table1-dgmn_da", "evaluate@table1-dgmn_da", "report"}),
    # train draws its curves and tune its figures with dgmn.viz (the run key ignores it)
    "dgmn/viz": (_append("dgmn/viz/colorize.py", "\n# edited\n"), TRAIN_EVAL | {"tune", "report"}),
}


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_an_edit_changes_exactly_the_stages_that_read_it(recorded_repo, edit):
    apply, expected = EDITS[edit]
    backup = {p: p.read_bytes() for p in recorded_repo.rglob("*")
              if p.is_file() and p.parts[len(recorded_repo.parts)] in ("dgmn", "conf")}
    try:
        apply(recorded_repo)
        changed = _changed(recorded_repo)
    finally:
        for path, content in backup.items():
            path.write_bytes(content)
    assert changed == expected, edit
