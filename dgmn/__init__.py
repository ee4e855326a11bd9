"""dgmn: Dynamic Graph Message Passing Networks (Zhang, Xu, Arnab, Torr, CVPR 2020).

Layers, with one-way dependencies:

- :mod:`dgmn.ops`     functional ops (the dynamic message-passing op, Eq. 3-7), no state;
- :mod:`dgmn.nn`      ``nn.Module`` blocks: :class:`~dgmn.nn.DGMN`, its ablations and the baselines;
- :mod:`dgmn.models`  backbones, Dilated FCN, Mask R-CNN with inserted modules, a builder registry;
- :mod:`dgmn.metrics` params/FLOPs counting and evaluation metrics.
"""

__version__ = "0.1.0"
