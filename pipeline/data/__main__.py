"""The data stages' entry point: ``python -m pipeline.data fetch|preprocess <data>``."""

import sys

from pipeline.common.errors import run_stage
from pipeline.data.stage import main

if __name__ == "__main__":
    sys.exit(run_stage(main, None))
