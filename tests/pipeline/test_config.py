"""The real Hydra configs: every experiment composes, validates and builds; bad values fail."""

from __future__ import annotations

import pytest

from dgmn.models import build_model
from dgmn.paper import paper_tables
from pipeline.config import ConfigError, experiment_names, load_config

ALL = experiment_names(include_aliases=True)
TRAINED = experiment_names()


def test_every_paper_table_row_has_an_experiment_file():
    rows = {}
    for name in ALL:
        meta = load_config([f"experiment={name}"]).experiment
        rows.setdefault(meta.table, set()).add(meta.row)
    for table in ("table1_cityscapes_val_ablation", "table2_coco_val", "table4_coco_testdev",
                  "table6_cityscapes_val_rates", "table7_coco_val_rates_groups"):
        assert rows[table] == set(range(len(paper_tables()[table]["rows"]))), table


@pytest.mark.parametrize("name", TRAINED)
def test_every_experiment_builds_its_model_in_the_default_profile(name):
    cfg = load_config([f"experiment={name}", "profile=default"])
    kwargs = {}
    if cfg.model["name"] == "mask_rcnn":
        kwargs = {"min_size": cfg.data.min_size, "max_size": cfg.data.max_size}
    model = build_model(cfg.model, **kwargs)
    assert sum(p.numel() for p in model.parameters()) > 0


@pytest.mark.parametrize("name", ALL)
def test_paper_profile_keeps_the_papers_hyper_parameters(name):
    cfg = load_config([f"experiment={name}", "profile=paper"])
    training = paper_tables()["training"]
    schedule = cfg.schedule
    assert cfg.data.source == "real" and cfg.model["weights"] == "imagenet"
    if cfg.data.task == "segmentation":
        paper = training["cityscapes"]
        assert (schedule.lr, schedule.iterations, schedule.batch_size) == (
            paper["lr"], paper["iterations"], paper["batch"])
        assert cfg.data.crop_size == [paper["crop"]] * 2 and schedule.policy == "poly"
        assert cfg.model["backbone"] == "resnet101" and cfg.model["output_stride"] == 8
    else:
        paper = training["coco"]
        assert (schedule.lr, schedule.iterations, schedule.batch_size) == (
            paper["lr"], paper["iterations"], paper["batch"])
        assert schedule.lr_steps == paper["lr_steps"] and schedule.lr_gamma == paper["lr_gamma"]
        assert (schedule.warmup_iters, schedule.warmup_factor) == (
            paper["warmup_iters"], paper["warmup_factor"])
        assert (cfg.data.min_size, cfg.data.max_size) == (paper["short_side"], paper["max_side"])
    # The paper gives SGD's momentum and weight decay for Cityscapes only; COCO uses the same
    # values, those of the Mask R-CNN benchmark's 1x schedule.
    sgd = training["cityscapes"]
    assert (schedule.momentum, schedule.weight_decay) == (sgd["momentum"], sgd["weight_decay"])


def test_alias_rows_train_the_same_run():
    alias = load_config(["experiment=table6/dgmn_da_dw_rates_1"])
    target = load_config(["experiment=table1/dgmn_da_dw"])
    assert alias.run_name == target.run_name and alias.model == target.model


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (["experiment=table9/nope"], "experiment/table9/nope"),
        (["schedule.lr=-1"], "schedule.lr"),
        (["data.source=web"], "data.source"),
        (["scaling.num_workers=3"], "schedule.batch_size"),
        (["schedule.iterations=ten"], "schedule.iterations"),
        (["tune.rates=[]"], "tune.rates"),
        (["tune.rates=[[1,0]]"], "tune.rates"),
        (["tune.groups=[0]"], "tune.groups"),
        (["model=mask_rcnn"], "model.name"),
        (["report.tables=[table9]"], "report.tables"),
        (["data.val_batch_size=0"], "data.val_batch_size"),
    ],
)
def test_bad_configs_fail_at_start_up_naming_the_key(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config(overrides)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (["model.context_kwargs.groups=3"], "groups=3"),
        (["model.context_kwargs.rates=[]"], "rates"),
        (["model.context=dgmnn"], "dgmnn"),
        (["model.backbone=resnet7"], "resnet7"),
    ],
)
def test_bad_model_settings_fail_when_the_model_is_built(overrides, match):
    cfg = load_config(["experiment=table1/dgmn_da_dw_ds", "profile=smoke", *overrides])
    with pytest.raises(ValueError, match=match):
        build_model(cfg.model)
