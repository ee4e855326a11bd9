"""The DGMN module: dynamic graph message passing as a residual layer (paper §3.3-3.5, Fig. 2-3).

For each rate ρ_q ∈ φ the module

1. samples K = k×k nodes uniformly on the grid dilated by ρ_q around every node (§3.3);
2. with dynamic sampling (DS), predicts a walk Δd for each of them with a k×k conv dilated by
   ρ_q over the uniformly sampled nodes (Eq. 4);
3. predicts, conditioned on the sampled nodes (with DS on the walked nodes, i.e. a deformable
   conv whose offsets are the walks), K affinity logits (DA) and K×G filter weights (DW) with
   one k×k conv (Eq. 6);
4. aggregates ``β_q Σ_j softmax_j(a_j) · w_j ⊙ h'_j`` with the functional op (Eq. 5, 7),
   and updates ``h = ReLU(f + BN(W_out m))`` (Eq. 2), for ``num_steps`` steps (T = 1 in the
   paper).

``h' = W_in h`` and ``W_out`` are 1×1 convs C→C (the C×C message transform of Eq. 1, split
around the grouped dynamic filter): they are the ``2·C²`` non-dynamic parameters that the
paper's Table 1 rows carry besides their predictors. Affinity and filter logits of each rate
are separate output channels of that rate's predictor, sliced by name, never by position
across rates.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchvision.ops import deform_conv2d

from dgmn._checks import check_positive_int
from dgmn.ops import check_kernel_size, check_rates, dynamic_message_passing
from dgmn.ops.message_passing import Backend


class DGMN(nn.Module):
    """Dynamic graph message passing module; ``(B, C, H, W) → (B, C, H, W)``.

    Args:
        in_channels: C.
        rates: sampling rates φ (S of them).
        kernel_size: k; K = k² sampled nodes per rate.
        groups: G, channel groups sharing one dynamic filter (must divide C; used with DW).
        dynamic_affinity: DA, predict the affinities A' (Eq. 6-7); else A' = 1/K.
        dynamic_filters: DW, predict per-node grouped filters w (Eq. 6); else w = 1.
        dynamic_sampling: DS, predict walks Δd (Eq. 4-5); else uniform sampling.
        beta_init: initial value of every β_q.
        num_steps: T, message-passing iterations sharing weights (Eq. 2).
        memory_efficient: recompute per-rate samples in backward (reference op).
        backend: op backend, see :func:`dgmn.ops.dynamic_message_passing`.
    """

    def __init__(self, in_channels: int, rates: Sequence[int] = (1,), kernel_size: int = 3,
                 groups: int | None = 4, dynamic_affinity: bool = True,
                 dynamic_filters: bool = True, dynamic_sampling: bool = True,
                 beta_init: float = 1.0, num_steps: int = 1, memory_efficient: bool = False,
                 backend: Backend = "auto") -> None:
        super().__init__()
        check_positive_int("in_channels", in_channels)
        self.rates = check_rates(rates)
        self.kernel_size = check_kernel_size(kernel_size)
        if dynamic_filters:
            if groups is None or isinstance(groups, bool) or groups <= 0:
                raise ValueError(f"groups must be a positive integer with dynamic_filters, "
                                 f"got groups={groups!r}")
            if in_channels % groups != 0:
                raise ValueError(f"groups={groups} must divide in_channels={in_channels}")
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got num_steps={num_steps}")
        self.in_channels = self.out_channels = in_channels
        self.groups = groups if dynamic_filters else 1
        self.dynamic_affinity = dynamic_affinity
        self.dynamic_filters = dynamic_filters
        self.dynamic_sampling = dynamic_sampling
        self.num_steps = num_steps
        self.memory_efficient = memory_efficient
        self.backend = backend

        k = self.kernel_size ** 2
        pad = self.kernel_size // 2
        self.value_proj = nn.Conv2d(in_channels, in_channels, 1, bias=False)
        self.walk_predictors = nn.ModuleList(
            nn.Conv2d(in_channels, 2 * k, self.kernel_size, padding=pad * r, dilation=r)
            for r in self.rates) if dynamic_sampling else None
        self.num_filter_logits = k * self.groups if dynamic_filters else 0
        self.num_affinity_logits = k if dynamic_affinity else 0
        predicted = self.num_filter_logits + self.num_affinity_logits
        self.node_predictors = nn.ModuleList(
            nn.Conv2d(in_channels, predicted, self.kernel_size, padding=pad * r, dilation=r)
            for r in self.rates) if predicted else None
        self.betas = nn.Parameter(torch.full((len(self.rates),), float(beta_init)))
        self.out_proj = nn.Conv2d(in_channels, in_channels, 1, bias=False)
        self.out_norm = nn.BatchNorm2d(in_channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Walks start at zero (uniform sampling, like DCN offsets); predicted filters start
        near 1 and affinity logits near 0, so the first message is a near-uniform average."""
        if self.walk_predictors is not None:
            for conv in self.walk_predictors:
                nn.init.zeros_(conv.weight)
                nn.init.zeros_(conv.bias)
        if self.node_predictors is not None:
            for conv in self.node_predictors:
                nn.init.normal_(conv.weight, std=0.01)
                nn.init.zeros_(conv.bias)
                nn.init.ones_(conv.bias[: self.num_filter_logits])

    def predict_walks(self, state: Tensor) -> Tensor | None:
        """Walks Δd (Eq. 4): ``(B, S, K, 2, H, W)`` in pixels ``(dy, dx)``, or ``None``."""
        if self.walk_predictors is None:
            return None
        batch, _, height, width = state.shape
        walks = [conv(state) for conv in self.walk_predictors]  # S × (B, 2K, H, W)
        return torch.stack(walks, dim=1).view(batch, len(self.rates), -1, 2, height, width)

    def predict_filters_and_affinities(self, state: Tensor, walks: Tensor | None
                                       ) -> tuple[Tensor | None, Tensor | None]:
        """Dynamic filters ``(B, S, G, K, H, W)`` and affinity logits ``(B, S, K, H, W)``
        (Eq. 6), each ``None`` when switched off; conditioned on the walked nodes with DS."""
        if self.node_predictors is None:
            return None, None
        batch, _, height, width = state.shape
        k = self.kernel_size ** 2
        logits = []
        for q, conv in enumerate(self.node_predictors):
            if walks is None:
                logits.append(conv(state))
            else:
                offsets = walks[:, q].reshape(batch, 2 * k, height, width)
                logits.append(deform_conv2d(state, offsets, conv.weight, conv.bias,
                                            padding=conv.padding, dilation=conv.dilation))
        stacked = torch.stack(logits, dim=1)  # (B, S, G·K + K, H, W)
        filters = affinity = None
        if self.dynamic_filters:
            filters = stacked[:, :, : self.num_filter_logits]
            filters = filters.reshape(batch, len(self.rates), self.groups, k, height, width)
        if self.dynamic_affinity:
            affinity = stacked[:, :, self.num_filter_logits:]
        return filters, affinity

    def message(self, state: Tensor) -> Tensor:
        """The message m (Eq. 5) received by every node from its S sampled neighbourhoods."""
        walks = self.predict_walks(state)
        filters, affinity = self.predict_filters_and_affinities(state, walks)
        return dynamic_message_passing(
            self.value_proj(state), self.rates, self.betas, filters=filters,
            affinity_logits=affinity, walks=walks, kernel_size=self.kernel_size,
            memory_efficient=self.memory_efficient, backend=self.backend)

    def forward(self, features: Tensor) -> Tensor:
        if features.dim() != 4 or features.shape[1] != self.in_channels:
            raise ValueError(f"DGMN expects (B, {self.in_channels}, H, W) input, "
                             f"got {tuple(features.shape)}")
        state = features
        for _ in range(self.num_steps):
            state = torch.relu(features + self.out_norm(self.out_proj(self.message(state))))
        return state

    def extra_repr(self) -> str:
        switches = [n for n, on in (("DA", self.dynamic_affinity), ("DW", self.dynamic_filters),
                                    ("DS", self.dynamic_sampling)) if on]
        return (f"{self.in_channels}, rates={self.rates}, kernel_size={self.kernel_size}, "
                f"groups={self.groups}, {'+'.join(switches) or 'static'}, "
                f"num_steps={self.num_steps}")
