"""Routed experts of a Mixture-of-Experts layer (PyTorch reference + dispatcher).

out[t] = sum_j w[t, j] * W2[e_j] @ (silu(G[e_j] x[t]) * (U[e_j] x[t])) with `w13[e] = cat([G, U])`.
For fp8 experts every projection is an fp8 linear layer (inputs quantised per 128 values, 128x128
block-scaled weights). As in DeepSeek-V3.2, the routing weight scales the fp32 activation before the
down projection and the per-expert outputs are summed in fp32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from dsagent.kernels.fp8 import act_quant_ref, fp8_gemm_ref


def _project(x: torch.Tensor, w: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
    if scale is None:
        return F.linear(x, w)
    return fp8_gemm_ref(*act_quant_ref(x), w, scale)


def fused_moe_ref(
    x: torch.Tensor,
    topk_ids: torch.Tensor,
    topk_weights: torch.Tensor,
    w13: torch.Tensor,
    w2: torch.Tensor,
    w13_scale: torch.Tensor | None = None,
    w2_scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """x [T, D], topk_ids [T, k], topk_weights [T, k] fp32, w13 [E, 2I, D], w2 [E, D, I] -> [T, D] in x's dtype."""
    num_experts, two_inter, _ = w13.shape
    inter = two_inter // 2
    out = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
    counts = torch.bincount(topk_ids.flatten().long(), minlength=num_experts).tolist()
    for e, count in enumerate(counts):
        if count == 0:
            continue
        tokens, slots = torch.where(topk_ids == e)
        h = _project(x[tokens], w13[e], None if w13_scale is None else w13_scale[e]).float()  # [n, 2I]
        act = F.silu(h[:, :inter]) * h[:, inter:] * topk_weights[tokens, slots].float().unsqueeze(-1)
        y = _project(act.to(x.dtype), w2[e], None if w2_scale is None else w2_scale[e])  # [n, D]
        out.index_add_(0, tokens, y.float())
    return out.to(x.dtype)


def fused_moe(
    x: torch.Tensor,
    topk_ids: torch.Tensor,
    topk_weights: torch.Tensor,
    w13: torch.Tensor,
    w2: torch.Tensor,
    w13_scale: torch.Tensor | None = None,
    w2_scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """Dispatcher for the routed experts (see fused_moe_ref): the Triton kernels on CUDA."""
    if x.is_cuda and (w13_scale is not None or w13.dtype == x.dtype):
        from dsagent.kernels.moe_triton import fused_moe_triton

        return fused_moe_triton(x.contiguous(), topk_ids, topk_weights, w13, w2, w13_scale, w2_scale)
    return fused_moe_ref(x, topk_ids, topk_weights, w13, w2, w13_scale, w2_scale)
