"""``nn.Module`` blocks: the DGMN module, its ablations and the baselines (one file each).

Baselines are built by name through :func:`build_context_module` (imported on use).
"""

from dgmn.nn.deform_mp import DeformableMessagePassing
from dgmn.nn.dgmn import DGMN
from dgmn.nn.dgmn_variants import dgmn_da, dgmn_da_dw, dgmn_da_dw_ds
from dgmn.nn.reduced import ReducedResidual
from dgmn.nn.registry import CONTEXT_MODULES, build_context_module, context_module_class

__all__ = ["CONTEXT_MODULES", "DGMN", "DeformableMessagePassing", "ReducedResidual",
           "build_context_module", "context_module_class", "dgmn_da", "dgmn_da_dw",
           "dgmn_da_dw_ds"]
