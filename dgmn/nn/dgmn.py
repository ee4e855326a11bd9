"""The DGMN module: dynamic graph message passing as a residual layer (paper §3.3-3.5, Fig. 2-3).

For each rate ρ_q ∈ φ the module

1. samples K = k×k nodes uniformly on the grid dilated by ρ_q around every node (§3.3);
2. with dynamic sampling (DS), predicts a walk Δd for each of them with a k×k conv dilated by
   ρ_q over the uniformly sampled nodes (Eq. 4);
3. predicts, conditioned on the sampled nodes (with DS on the walked nodes, i.e. a deformable
   conv whose offsets are the walks), K affinity logits (DA) and K×G filter weights (DW) with
   one k×k conv (Eq. 6);
4. aggregates ``β_q Σ_j softmax_j(a_j) · w_j ⊙ h'_j`` with the functional op (Eq. 5, 7)
   and updates the nodes (Eq. 2), for ``num_steps`` steps (T = 1 in the paper).

Two module forms (``form``):

- ``"projected"`` (the Cityscapes tables 1, 5, 6): ``h' = W_in h`` and the update
  ``h = ReLU(f + BN(W_out m))``, with ``W_in``, ``W_out`` 1×1 convs C→C (the C×C message
  transform of Eq. 1, split around the grouped dynamic filter): the ``2·C²`` non-dynamic
  parameters that Table 1's rows carry besides their predictors. Our initialisation: walks
  zero (uniform sampling at the start), predictors N(0, 0.01) with filter bias 1.
- ``"residual"`` (the detection tables 2, 4, 7, 8; the authors' public module): ``h' = h`` and
  ``h = f + m`` with ``m = Σ_q β_q m_q`` — no projections, no normalisation, no
  non-linearity, predictors without bias. This is what the paper's whole-model total for
  Mask R-CNN R-50 + DGMN (C4, C5), 51.1M parameters, counts. The authors' initialisation:
  every conv (walk and filter/affinity predictors) U(±1/√fan_in), fan_in = k²·C, β = 1.

Affinity and filter logits of each rate are separate output channels of that rate's
predictor, sliced by name, never by position across rates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from dgmn._checks import check_positive_int
from dgmn.ops import check_kernel_size, check_rates, dynamic_message_passing
from dgmn.ops.deform import deform_conv2d
from dgmn.ops.message_passing import Backend

Form = Literal["projected", "residual"]
#: The module forms, see the module docstring.
FORMS: tuple[str, ...] = ("projected", "residual")


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
        form: ``"projected"`` (``ReLU(f + BN(W_out m(W_in h)))``, our initialisation) or
            ``"residual"`` (``f + m(h)``, bias-free predictors, the authors' initialisation);
            see the module docstring.
    """

    def __init__(self, in_channels: int, rates: Sequence[int] = (1,), kernel_size: int = 3,
                 groups: int | None = 4, dynamic_affinity: bool = True,
                 dynamic_filters: bool = True, dynamic_sampling: bool = True,
                 beta_init: float = 1.0, num_steps: int = 1, memory_efficient: bool = False,
                 backend: Backend = "auto", form: Form = "projected") -> None:
        super().__init__()
        check_positive_int("in_channels", in_channels)
        if form not in FORMS:
            raise ValueError(f"form must be one of {FORMS}, got form={form!r}")
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
        self.form = form
        projected = form == "projected"

        k = self.kernel_size ** 2
        self.num_filter_logits = k * self.groups if dynamic_filters else 0
        self.num_affinity_logits = k if dynamic_affinity else 0
        predicted = self.num_filter_logits + self.num_affinity_logits
        self.value_proj = nn.Conv2d(in_channels, in_channels, 1, bias=False) if projected else None
        self.walk_predictors = self._per_rate_convs(2 * k, projected) if dynamic_sampling else None
        self.node_predictors = self._per_rate_convs(predicted, projected) if predicted else None
        self.betas = nn.Parameter(torch.full((len(self.rates),), float(beta_init)))
        self.out_proj = nn.Conv2d(in_channels, in_channels, 1, bias=False) if projected else None
        self.out_norm = nn.BatchNorm2d(in_channels) if projected else None
        self.reset_parameters()

    def _per_rate_convs(self, out_channels: int, bias: bool) -> nn.ModuleList:
        """One k×k conv C→``out_channels`` per rate, dilated by it (size-preserving)."""
        pad = self.kernel_size // 2
        return nn.ModuleList(
            nn.Conv2d(self.in_channels, out_channels, self.kernel_size, padding=pad * r,
                      dilation=r, bias=bias)
            for r in self.rates)

    def reset_parameters(self) -> None:
        """Initialise the predictors as the form prescribes (see the module docstring).

        ``projected``: walks start at zero (uniform sampling, like DCN offsets); predicted
        filters near 1 and affinity logits near 0, so the first message is a near-uniform
        average. ``residual``: U(±1/√fan_in) for every predictor (the authors' code: default
        ``nn.Conv2d`` offset convs and their deformable conv's ``uniform(-1/√n, 1/√n)``).
        """
        walk_convs = list(self.walk_predictors or ())
        node_convs = list(self.node_predictors or ())
        if self.form == "residual":
            for conv in walk_convs + node_convs:
                bound = 1.0 / math.sqrt(conv.weight[0].numel())
                nn.init.uniform_(conv.weight, -bound, bound)
            return
        for conv in walk_convs:
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)
        for conv in node_convs:
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
        values = state if self.value_proj is None else self.value_proj(state)
        return dynamic_message_passing(
            values, self.rates, self.betas, filters=filters,
            affinity_logits=affinity, walks=walks, kernel_size=self.kernel_size,
            memory_efficient=self.memory_efficient, backend=self.backend)

    def forward(self, features: Tensor) -> Tensor:
        if features.dim() != 4 or features.shape[1] != self.in_channels:
            raise ValueError(f"DGMN expects (B, {self.in_channels}, H, W) input, "
                             f"got {tuple(features.shape)}")
        state = features
        for _ in range(self.num_steps):
            message = self.message(state)
            if self.form == "residual":
                state = features + message
            else:
                state = torch.relu(features + self.out_norm(self.out_proj(message)))
        return state

    def extra_repr(self) -> str:
        switches = [n for n, on in (("DA", self.dynamic_affinity), ("DW", self.dynamic_filters),
                                    ("DS", self.dynamic_sampling)) if on]
        return (f"{self.in_channels}, rates={self.rates}, kernel_size={self.kernel_size}, "
                f"groups={self.groups}, {'+'.join(switches) or 'static'}, "
                f"num_steps={self.num_steps}, form={self.form!r}")
