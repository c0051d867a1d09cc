"""The DeepSeek-V3.2 lightning indexer: fp8 index scores and per-query top-k (PyTorch reference + dispatcher).

I[t, s] = k_scale[s] * sum_h relu(q8[t, h] . k8[s]) * w[t, h]; the caller folds the query scales, the
head count and the head-dim softmax scale into w. Query t sits at absolute position offset + t and
sees keys s <= offset + t.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from dsagent.kernels.fp8 import act_quant, act_quant_ref, fp8_to_float

# Elements of the [t, H, S] fp32 logits held at once by the reference (64 MiB).
_LOGIT_BUDGET = 1 << 24


@lru_cache(maxsize=8)
def _hadamard(n: int, device: torch.device) -> torch.Tensor:
    h = torch.ones(1, 1)
    while h.shape[0] < n:  # Sylvester construction, natural order
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h.to(device)


def hadamard(x: torch.Tensor) -> torch.Tensor:
    """Orthonormal Hadamard rotation of the last dim (a power of two), computed in fp32, x's dtype out."""
    n = x.shape[-1]
    return (x.float() @ _hadamard(n, x.device) * n**-0.5).to(x.dtype)


def hadamard_quant_ref(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The indexer's fp8 queries and keys: x [..., Di] rotated (hadamard), then act_quant -> (fp8, scales)."""
    return act_quant_ref(hadamard(x))


def hadamard_quant(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Dispatcher (see hadamard_quant_ref): on CUDA one Triton kernel where the head is one 128-wide block of
    16-bit values (the tensor cores rotate them exactly)."""
    if x.is_cuda and x.shape[-1] == 128 and x.dtype in (torch.bfloat16, torch.float16):
        from dsagent.kernels.hadamard_triton import hadamard_quant_triton

        return hadamard_quant_triton(x, _hadamard(128, x.device))
    return act_quant(hadamard(x))


def index_scores_ref(
    q_fp8: torch.Tensor, weights: torch.Tensor, k_fp8: torch.Tensor, k_scale: torch.Tensor, offset: int
) -> torch.Tensor:
    """q_fp8 [T, H, D] e4m3, weights [T, H] fp32, k_fp8 [S, D] e4m3, k_scale [S] fp32 -> [T, S] fp32."""
    t_len, heads, _ = q_fp8.shape
    s_len = k_fp8.shape[0]
    keys = fp8_to_float(k_fp8)
    out = torch.empty(t_len, s_len, dtype=torch.float32, device=q_fp8.device)
    step = max(1, _LOGIT_BUDGET // max(1, heads * s_len))
    for start in range(0, t_len, step):
        stop = min(t_len, start + step)
        logits = torch.einsum("thd,sd->ths", fp8_to_float(q_fp8[start:stop]), keys)  # [t, H, S]
        summed = (logits.relu_() * weights[start:stop].float().unsqueeze(-1)).sum(dim=1)  # [t, S]
        out[start:stop] = summed * k_scale.float().unsqueeze(0)
    query_pos = offset + torch.arange(t_len, device=out.device).unsqueeze(1)
    future = torch.arange(s_len, device=out.device).unsqueeze(0) > query_pos
    return out.masked_fill_(future, float("-inf"))


def index_topk_ref(scores: torch.Tensor, k: int) -> torch.Tensor:
    """scores [T, S] -> [T, k] int32 key positions of the k best scores; -1 where fewer than k are visible."""
    t_len, s_len = scores.shape
    picked = min(k, s_len)
    values, positions = scores.topk(picked, dim=-1)
    positions = positions.to(torch.int32).masked_fill_(values == float("-inf"), -1)
    if picked < k:
        pad = torch.full((t_len, k - picked), -1, dtype=torch.int32, device=scores.device)
        positions = torch.cat([positions, pad], dim=-1)
    return positions


def index_scores(
    q_fp8: torch.Tensor, weights: torch.Tensor, k_fp8: torch.Tensor, k_scale: torch.Tensor, offset: int
) -> torch.Tensor:
    """Dispatcher for the index scores (see index_scores_ref): the Triton kernel on CUDA."""
    if q_fp8.is_cuda:
        from dsagent.kernels.indexer_triton import index_scores_triton

        return index_scores_triton(q_fp8, weights, k_fp8, k_scale, offset)
    return index_scores_ref(q_fp8, weights, k_fp8, k_scale, offset)


def index_topk(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Dispatcher for the per-query top-k (see index_topk_ref): radix select or torch.topk on CUDA."""
    if scores.is_cuda:
        from dsagent.kernels.indexer_triton import index_topk_cuda

        return index_topk_cuda(scores, k)
    return index_topk_ref(scores, k)


def index_select(
    q_fp8: torch.Tensor,
    weights: torch.Tensor,
    k_fp8: torch.Tensor,
    k_scale: torch.Tensor,
    start: int | torch.Tensor,
    k: int,
) -> torch.Tensor:
    """Index scores then the top k: [T, k] int32 key positions (-1 = none). Query t sits at position
    start + t, or at start[t] when `start` is a device tensor of positions (keys after it are masked there,
    so nothing on the host changes with the position). On CUDA a decode step with a long cache counts the
    first radix digit while scoring and finishes with the radix select (two kernels)."""
    t_len, s_len = q_fp8.shape[0], k_fp8.shape[0]
    positions = start if isinstance(start, torch.Tensor) else None
    if q_fp8.is_cuda and t_len <= 4 and s_len > k > 0:
        from dsagent.kernels.indexer_triton import RADIX_MIN_KEYS, index_scores_triton
        from dsagent.kernels.topk_triton import radix_scratch, topk_triton

        if s_len >= RADIX_MIN_KEYS:
            scratch = radix_scratch(t_len, q_fp8.device)
            scores = index_scores_triton(q_fp8, weights, k_fp8, k_scale, start, radix=scratch)
            return topk_triton(scores, k, scratch=scratch)
        return index_topk(index_scores_triton(q_fp8, weights, k_fp8, k_scale, start), k)
    scores = index_scores(q_fp8, weights, k_fp8, k_scale, s_len if positions is not None else start)  # [T, S]
    if positions is not None:
        future = torch.arange(s_len, device=scores.device).unsqueeze(0) > positions.unsqueeze(1)
        scores = scores.masked_fill_(future, float("-inf"))
    return index_topk(scores, k)
