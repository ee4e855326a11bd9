"""One error path: a model config the library cannot build is a ``DgmnError`` subclass
(``ModelConfigError``), and every stage that builds a model (train, tune, evaluate) reports it
as one ``error: …`` line naming the value, exit status 2, before any data, Ray or MLflow work.
``run_stage`` exits with the ``exit_code`` a :class:`StageError` subclass declares."""

from __future__ import annotations

from pathlib import Path

import pytest

from dgmn.errors import DgmnError
from dgmn.models.registry import ModelConfigError, build_model
from pipeline import evaluate, train, tune
from pipeline.common.errors import StageError, run_stage

EXPERIMENT = "experiment=table1/dgmn_da_dw_ds"


@pytest.mark.parametrize("cfg", [
    {"name": "dilated_fcn", "backbone": "resnet5"},  # rejected by the builder
    {"name": "dilated_fcn", "backbone": "resnet_tiny", "contxt": "dgmn"},  # by the registry
    {"name": "deeplab"},
])
def test_model_config_errors_are_library_errors(cfg) -> None:
    with pytest.raises(ModelConfigError) as caught:
        build_model(cfg)
    assert isinstance(caught.value, DgmnError) and isinstance(caught.value, ValueError)


def test_run_stage_exits_with_the_errors_exit_code(capsys) -> None:
    class UnavailableError(StageError):
        exit_code = 3

    def main(argv):
        raise UnavailableError("store: unreachable\n(retry later)")

    assert run_stage(main, []) == 3
    assert capsys.readouterr().err == "error: store: unreachable (retry later)\n"


@pytest.mark.parametrize(("stage", "experiment"), [
    (train, [EXPERIMENT]), (tune, []), (evaluate, [EXPERIMENT])])
def test_bad_model_key_is_one_line_exit_2(stage, experiment, tmp_path: Path, capsys) -> None:
    argv = [*experiment, "profile=smoke", "model.backbone=resnet5",
            f"paths.processed={tmp_path / 'processed'}", f"paths.runs={tmp_path / 'runs'}",
            f"paths.ray_storage={tmp_path / 'ray'}", "tracking.enabled=false"]
    assert run_stage(stage.main, argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert "backbone='resnet5'" in lines[0] and "Traceback" not in captured.err
    assert "tune.groups" not in lines[0]  # the base model is at fault, not the grid
    assert not (tmp_path / "runs").exists() and not (tmp_path / "ray").exists()
