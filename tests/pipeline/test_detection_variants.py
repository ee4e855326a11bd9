"""The paper's detection variants have one definition: the library's insertion presets
(``MASK_RCNN_PRESETS``). Table rows name a preset and state only what they vary; a sweep expands
presets before it sets φ and G."""

from __future__ import annotations

import pytest

from dgmn.models.detection import DGMN_COCO_KWARGS, resolve_insert
from pipeline.config import load_config
from pipeline.config.compose import PROJECT_ROOT
from pipeline.config.schema import ConfigError
from pipeline.tasks.registry import build_task

#: Table 7's rows: what each changes of the C5 DGMN preset (the paper's Table 7).
TABLE7 = {
    "dgmn_da_rates_1_4_8_12": {"dynamic_filters": False, "dynamic_sampling": False},
    "dgmn_da_ds_rates_1_4_8_12": {"dynamic_filters": False},
    "dgmn_rates_1_4_8_g2": {"rates": [1, 4, 8], "groups": 2},
    "dgmn_rates_1_4_8_g4": {"rates": [1, 4, 8], "groups": 4},
}


@pytest.mark.parametrize("row", sorted(TABLE7))
def test_table7_rows_are_the_c5_preset_with_only_their_changes(row):
    specs = resolve_insert(load_config([f"experiment=table7/{row}"]).model["insert"])
    expected = {**DGMN_COCO_KWARGS, **TABLE7[row]}
    assert specs == [{"module": "dgmn", "at": "c5", "kwargs": expected}]
    assert expected["form"] == "residual"  # the authors' detection module, from the preset


def test_a_preset_takes_only_module_arguments():
    with pytest.raises(ValueError, match="only 'kwargs'"):
        resolve_insert({"preset": "dgmn_c5", "at": "c4"})
    with pytest.raises(ValueError, match="unknown insert preset"):
        resolve_insert({"preset": "dgmn_c6"})


@pytest.mark.parametrize(("experiment", "module"), [("table2/dgmn_c5", "dgmn"),
                                                    ("table2/dgmn_res4", "dgmn_reduced"),
                                                    ("table7/dgmn_rates_1_4_8_g2", "dgmn")])
def test_a_sweep_sets_rates_and_groups_of_presets_and_reduced_modules(experiment, module):
    cfg = load_config([f"experiment={experiment}", "profile=smoke"])
    model = build_task(cfg, PROJECT_ROOT).with_rates_and_groups(cfg.model, [1, 2], 2)
    [spec] = model["insert"]
    assert spec["module"] == module
    assert spec["kwargs"] == {**resolve_insert(cfg.model["insert"])[0]["kwargs"],
                              "rates": [1, 2], "groups": 2}


def test_a_sweep_without_a_dgmn_module_names_the_base_experiment():
    cfg = load_config(["experiment=table2/gcnet", "profile=smoke"])
    with pytest.raises(ConfigError, match=r"table2/gcnet.*no dgmn or dgmn_reduced"):
        build_task(cfg, PROJECT_ROOT).with_rates_and_groups(cfg.model, [1], 2)
