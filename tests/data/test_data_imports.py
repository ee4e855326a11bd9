"""Import boundaries: dgmn.data loads no pipeline/orchestration packages; the data stages load no
torch (their start-up stays well under a second)."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _top_level_modules_after(code: str) -> set[str]:
    script = f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout
    return {m.split(".")[0] for m in out.split()}


def test_data_stages_do_not_import_torch():
    loaded = _top_level_modules_after("import pipeline.data.fetch, pipeline.data.preprocess")
    assert "pipeline" in loaded
    assert not loaded & {"torch", "torchvision"}


@pytest.mark.slow
def test_library_does_not_import_the_pipeline_stack():
    loaded = _top_level_modules_after(
        "import dgmn.data.cityscapes, dgmn.data.coco, dgmn.data.transforms, dgmn.data.synthetic\n"
        "from dgmn.data import CityscapesSegmentation, CocoInstances")
    assert "torch" in loaded  # the datasets did load
    assert not loaded & {"pipeline", "ray", "mlflow", "dvc", "hydra"}
