"""Feed-forward layers: the dense SwiGLU MLP and the Mixture of Experts with group-limited routing.

Shape legend: T tokens, D model dim, E routed experts, G expert groups, k experts per token, I expert dim.
"""

from __future__ import annotations

import torch
from dsagent.kernels.elementwise import add, swiglu
from dsagent.kernels.moe import fused_moe
from dsagent.kernels.routing import Routing, route
from dsagent.model.config import ModelConfig
from dsagent.model.layers import Linear, capturing_decode, fuse_rows, matmul_fp32, side_stream

# Up to this many tokens (decode), in a step being captured into a CUDA graph, the shared expert runs on a side
# stream beside the router and the routed experts: both are short, memory-bound kernels whose ramps and tails
# then overlap. Launched from Python (eager), the stream switches cost more host time than they save (H100).
# 0 turns it off.
OVERLAP_ROWS = 16


class MLP:
    """down(silu(gate x) * up x), the activation product in fp32."""

    def __init__(self, gate: Linear, up: Linear, down: Linear):
        self.gate, self.up, self.down = gate, up, down
        self.gate_up = fuse_rows([gate, up])  # one GEMM for both (their weights become views of its weight)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.gate_up is None:
            return self.down(swiglu(self.gate(x), self.up(x)))
        return self.down(swiglu(*self.gate_up(x).split([self.gate.out_features, self.up.out_features], dim=-1)))


class Gate:
    """Router: the logits x @ W^T in fp32, then kernels.routing picks each token's experts (sigmoid or softmax
    scores, the correction bias steering selection only, groups ranked by their top-2 biased scores (noaux_tc)
    or their best score, the best topk_group kept)."""

    def __init__(self, config: ModelConfig, weight: torch.Tensor, bias: torch.Tensor | None):
        self.weight = weight  # [E, D] fp32
        self.bias = bias  # [E] fp32 or None
        grouped = config.n_group > 1 and config.topk_method != "greedy"
        self.routing = Routing(
            k=config.num_experts_per_tok,
            groups=config.n_group if grouped else 1,
            topk_groups=config.topk_group if grouped else 1,
            sigmoid=config.scoring_func == "sigmoid",
            group_top2=config.topk_method == "noaux_tc",
            normalise=config.norm_topk_prob,
            scale=config.routed_scaling_factor,
        )

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [T, D] -> (weights [T, k] fp32, expert ids [T, k] int64)."""
        return route(matmul_fp32(x, self.weight), self.bias, self.routing)


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
        if self.shared is None:
            return self.routed(x, trace)
        if not capturing_decode(x, OVERLAP_ROWS):
            return add(self.routed(x, trace), self.shared(x))
        # fork: the side stream starts after what the main stream has queued (x is ready); join before the sum.
        # Every tensor either stream touches is freed only after the join, so no block is reused early.
        main, side = torch.cuda.current_stream(x.device), side_stream(x.device)
        side.wait_stream(main)
        with torch.cuda.stream(side):
            shared = self.shared(x)
        y = self.routed(x, trace)
        main.wait_stream(side)
        return add(y, shared)

    def routed(self, x: torch.Tensor, trace: dict | None = None) -> torch.Tensor:
        weights, ids = self.gate(x)
        if trace is not None:
            trace["experts"], trace["weights"] = ids, weights
        return fused_moe(x, ids, weights, self.w13, self.w2, self.w13_scale, self.w2_scale)
