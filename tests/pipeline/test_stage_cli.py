"""The one stage CLI (pipeline.common.cli): every stage lists the config groups in ``--help``,
prints the composed config for ``--cfg job`` without doing work, and rejects an unknown key or
flag with one ``error:`` line and exit status 2."""

from __future__ import annotations

import importlib

import pytest
import yaml

from pipeline.common.cli import config_groups
from pipeline.common.errors import run_stage
from pipeline.config.compose import CONF_DIR

#: stage module → (its leading positionals, the function doing its work).
STAGES = {
    "pipeline.train": ([], "train"),
    "pipeline.evaluate": ([], "evaluate"),
    "pipeline.tune": ([], "sweep"),
    "pipeline.report": ([], "run"),
    "pipeline.data": (["fetch", "cityscapes"], "fetch"),
}
#: ``python -m`` name → the module holding ``main`` where it is a package's ``__main__``.
MAIN_MODULES = {"pipeline.data": "pipeline.data.stage"}


def _stage_module(stage: str):
    return importlib.import_module(MAIN_MODULES.get(stage, stage))


def _refuse_work(monkeypatch: pytest.MonkeyPatch, module, name: str) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError(f"{module.__name__}.{name} ran")

    monkeypatch.setattr(module, name, refuse)


def test_config_groups_are_read_from_conf():
    groups = config_groups()
    assert set(groups) == {p.name for p in CONF_DIR.iterdir() if p.is_dir()}
    assert "smoke" in groups["profile"] and "table1/dgmn_da" in groups["experiment"]


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_help_lists_every_config_group_and_its_options(stage, capsys):
    module = _stage_module(stage)
    assert run_stage(module.main, ["--help"]) == 0
    out = capsys.readouterr().out
    assert f"python -m {stage}" in out and "--cfg" in out
    for group, options in config_groups().items():
        line = next(ln for ln in out.splitlines() if ln.strip().startswith(f"{group}:"))
        assert all(option in line for option in options), (group, line)


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_cfg_job_prints_the_redacted_config_and_does_no_work(stage, capsys, monkeypatch):
    module = _stage_module(stage)
    positionals, work = STAGES[stage]
    _refuse_work(monkeypatch, module, work)
    argv = [*positionals, "profile=smoke", "schedule.lr=0.125",
            "tracking.uri=https://alice:s3cret@mlflow.example/x", "--cfg", "job"]
    assert run_stage(module.main, argv) == 0
    captured = capsys.readouterr()
    cfg = yaml.safe_load(captured.out)
    assert cfg["profile"] == "smoke" and cfg["schedule"]["lr"] == 0.125
    assert "s3cret" not in captured.out and cfg["tracking"]["uri"].startswith("https://")
    if stage == "pipeline.data":  # the positional picks an experiment reading that data
        assert cfg["data"]["name"] == "cityscapes"


@pytest.mark.parametrize("stage", sorted(STAGES))
@pytest.mark.parametrize("bad", [["schedule.no_such_key=1"], ["no_such_group=x"],
                                 ["--no-such-flag"], ["not-an-override"]])
def test_unknown_key_or_flag_is_one_error_line_exit_2(stage, bad, capsys, monkeypatch):
    module = _stage_module(stage)
    positionals, work = STAGES[stage]
    _refuse_work(monkeypatch, module, work)
    assert run_stage(module.main, [*positionals, *bad, "--cfg", "job"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert bad[0].split("=")[0].lstrip("-") in lines[0]
    assert captured.out == ""


def test_dataset_stage_refuses_an_unknown_data_name(capsys):
    module = _stage_module("pipeline.data")
    assert run_stage(module.main, ["fetch", "imagenet"]) == 2
    assert "imagenet" in capsys.readouterr().err
