"""Run one pipeline stage on the cluster head, from the checkout the setup commands installed.

``ray submit`` copies a script to the head and runs it with the cluster's Python; the stages are
modules, so this script is the bridge::

    ray submit cluster/aws-gpu.yaml cluster/run_stage.py train experiment=table1/dgmn_da_dw_ds \
        profile=paper

is ``cd ~/dgmn && python -m pipeline.train experiment=table1/dgmn_da_dw_ds profile=paper`` on the
head. ``DGMN_HOME`` overrides the checkout (default ``~/dgmn``). Standard library only.
"""

from __future__ import annotations

import os
import re
import runpy
import sys
from pathlib import Path


def main(argv: list[str]) -> None:
    """``argv``: ``[stage, *hydra_overrides]``; runs ``pipeline.<stage>`` as ``__main__``."""
    if not argv or not re.fullmatch(r"[a-z_]+", argv[0]):
        raise SystemExit("usage: run_stage.py STAGE [HYDRA_OVERRIDE ...]  (STAGE: train, tune)")
    stage, overrides = argv[0], argv[1:]
    repo = Path(os.environ.get("DGMN_HOME", Path.home() / "dgmn")).expanduser()
    if not (repo / "pipeline").is_dir():
        raise SystemExit(f"{repo}: no pipeline/ here; set DGMN_HOME to the dgmn checkout")
    os.chdir(repo)
    sys.path.insert(0, str(repo))
    module = f"pipeline.{stage}"
    sys.argv = [module, *overrides]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
