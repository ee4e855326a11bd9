"""``nn.Module`` blocks: the DGMN module, its ablations and the baselines (one file each)."""

from dgmn.nn.registry import CONTEXT_MODULES, build_context_module, context_module_class

__all__ = ["CONTEXT_MODULES", "build_context_module", "context_module_class"]
