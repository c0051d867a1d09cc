"""Mixture-of-Experts routing from the router's logits (PyTorch reference + dispatcher).

Scores are sigmoid (or softmax) of the logits; an optional correction bias steers the selection only. With
expert groups, each group is ranked by the sum of its two best biased scores (V3's noaux_tc) or by its best
one, and only the best `topk_groups` groups stay eligible; then the k best biased scores pick the experts,
weighted by their unbiased scores, normalised to sum 1 when asked, times the routed scaling factor.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Routing:
    k: int  # experts per token
    groups: int = 1  # expert groups (1: no group limit)
    topk_groups: int = 1  # groups kept per token
    sigmoid: bool = True  # sigmoid scores, else softmax
    group_top2: bool = True  # rank groups by their two best scores (noaux_tc), else by their best
    normalise: bool = True  # weights sum to 1 (when k > 1)
    scale: float = 1.0  # routed scaling factor


def route_ref(logits: torch.Tensor, bias: torch.Tensor | None, r: Routing) -> tuple[torch.Tensor, torch.Tensor]:
    """logits [T, E] fp32, bias [E] fp32 or None -> (weights [T, k] fp32, expert ids [T, k] int64), best first."""
    scores = logits.sigmoid() if r.sigmoid else logits.softmax(dim=-1)
    original = scores
    if bias is not None:
        scores = scores + bias
    if r.groups > 1:
        grouped = scores.view(logits.shape[0], r.groups, -1)  # [T, G, E/G]
        group_scores = grouped.topk(2, dim=-1)[0].sum(dim=-1) if r.group_top2 else grouped.amax(dim=-1)
        keep = group_scores.topk(r.topk_groups, dim=-1)[1]
        dropped = torch.ones_like(group_scores, dtype=torch.bool).scatter_(1, keep, False)
        scores = grouped.masked_fill(dropped.unsqueeze(-1), float("-inf")).flatten(1)
    ids = scores.topk(r.k, dim=-1)[1]
    weights = original.gather(1, ids)
    if r.normalise and r.k > 1:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return weights * r.scale, ids


def route(logits: torch.Tensor, bias: torch.Tensor | None, r: Routing) -> tuple[torch.Tensor, torch.Tensor]:
    """Dispatcher (see route_ref): one Triton kernel on CUDA instead of about fifteen (three of them sorts)."""
    if logits.is_cuda:
        from dsagent.kernels.routing_triton import route_fits, route_triton

        if route_fits(logits, r):
            return route_triton(logits, bias, r)
    return route_ref(logits, bias, r)
