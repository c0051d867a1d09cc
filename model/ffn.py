"""Feed-forward layers: the dense SwiGLU MLP and the Mixture of Experts with group-limited routing.

Shape legend: T tokens, D model dim, E routed experts, G expert groups, k experts per token, I expert dim.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from dsagent.kernels.moe import fused_moe
from dsagent.model.config import ModelConfig
from dsagent.model.layers import Linear


class MLP:
    """down(silu(gate x) * up x), the activation product in fp32."""

    def __init__(self, gate: Linear, up: Linear, down: Linear):
        self.gate, self.up, self.down = gate, up, down

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.down((F.silu(self.gate(x).float()) * self.up(x).float()).to(x.dtype))


class Gate:
    """Router: sigmoid (or softmax) scores; the correction bias steers selection only; groups are ranked
    by their top-2 biased scores (noaux_tc) or their best score, the best topk_group kept."""

    def __init__(self, config: ModelConfig, weight: torch.Tensor, bias: torch.Tensor | None):
        self.weight = weight  # [E, D] fp32
        self.bias = bias  # [E] fp32 or None
        self.k, self.groups, self.topk_groups = config.num_experts_per_tok, config.n_group, config.topk_group
        self.scoring, self.method = config.scoring_func, config.topk_method
        self.normalise, self.route_scale = config.norm_topk_prob, config.routed_scaling_factor

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [T, D] -> (weights [T, k] fp32, expert ids [T, k] int64)."""
        logits = x.float() @ self.weight.T
        scores = logits.sigmoid() if self.scoring == "sigmoid" else logits.softmax(dim=-1)
        original = scores
        if self.bias is not None:
            scores = scores + self.bias
        if self.groups > 1 and self.method != "greedy":
            grouped = scores.view(x.shape[0], self.groups, -1)  # [T, G, E/G]
            if self.method == "noaux_tc":
                group_scores = grouped.topk(2, dim=-1)[0].sum(dim=-1)
            else:
                group_scores = grouped.amax(dim=-1)
            keep = group_scores.topk(self.topk_groups, dim=-1)[1]
            dropped = torch.ones_like(group_scores, dtype=torch.bool).scatter_(1, keep, False)
            scores = grouped.masked_fill(dropped.unsqueeze(-1), float("-inf")).flatten(1)
        ids = scores.topk(self.k, dim=-1)[1]
        weights = original.gather(1, ids)
        if self.normalise and self.k > 1:
            weights = weights / weights.sum(dim=-1, keepdim=True)
        return weights * self.route_scale, ids


class MoE:
    """Routed experts (stacked for fused_moe) plus the always-on shared expert."""

    def __init__(
        self,
        gate: Gate,
        w13: torch.Tensor,
        w2: torch.Tensor,
        w13_scale: torch.Tensor | None,
        w2_scale: torch.Tensor | None,
        shared: MLP | None,
    ):
        self.gate, self.shared = gate, shared
        self.w13, self.w2 = w13, w2  # [E, 2I, D], [E, D, I]
        self.w13_scale, self.w2_scale = w13_scale, w2_scale

    def __call__(self, x: torch.Tensor, trace: dict | None = None) -> torch.Tensor:
        weights, ids = self.gate(x)
        if trace is not None:
            trace["experts"], trace["weights"] = ids, weights
        y = fused_moe(x, ids, weights, self.w13, self.w2, self.w13_scale, self.w2_scale)
        if self.shared is None:
            return y
        return (y.float() + self.shared(x).float()).to(x.dtype)
