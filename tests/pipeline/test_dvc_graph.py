"""The DVC graph is exact: each stage declares the code it imports, no more and no less.

Which stages an edit reruns (never a training for an evaluate, report or data-stage setting) is
checked on the smoke pipeline's real run, in ``test_dvc.py``."""

from __future__ import annotations

import functools
import json
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
