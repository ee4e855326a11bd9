"""Import boundary: dgmn.viz loads neither the pipeline stack nor matplotlib until it draws."""

from __future__ import annotations

import subprocess
import sys


def test_viz_imports_no_pipeline_stack_and_matplotlib_lazily() -> None:
    script = "import dgmn.viz, sys\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout
    loaded = {m.split(".")[0] for m in out.split()}
    assert "dgmn" in loaded
    assert not loaded & {"pipeline", "ray", "mlflow", "hydra", "dvc", "matplotlib", "pandas"}
