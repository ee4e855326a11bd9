"""Config schemas and composition of the Hydra configs in ``conf/``."""

from pipeline.config.compose import (
    as_dict,
    experiment_names,
    from_dict,
    load_config,
)
from pipeline.config.schema import ConfigError, PipelineConfig

__all__ = ["ConfigError", "PipelineConfig", "as_dict", "experiment_names", "from_dict",
           "load_config"]
