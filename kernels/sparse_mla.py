"""Sparse multi-head latent attention in the absorbed form (PyTorch reference + dispatcher).

Every query head attends, over the key rows its query selected, to the cached rows
`kv[s] = [normalised latent (dv values) | RoPE key]`; the values are the latent part. The caller has
already absorbed the key up-projection into q and applies the value up-projection afterwards.
"""

from __future__ import annotations

import torch

# Elements of gathered fp32 key rows held at once by the reference (64 MiB).
_GATHER_BUDGET = 1 << 24


def sparse_mla_ref(q: torch.Tensor, kv: torch.Tensor, indices: torch.Tensor, scale: float, dv: int) -> torch.Tensor:
    """q [B, T, H, Dqk], kv [B, S, Dqk], indices [B, T, K] int32 (-1 = skip) -> [B, T, H, dv] in q's dtype.

    Softmax in fp32. A query whose K indices are all -1 gets zeros.
    """
    batch, t_len, heads, dqk = q.shape
    k_len = indices.shape[-1]
    out = torch.empty(batch, t_len, heads, dv, dtype=q.dtype, device=q.device)
    step = max(1, _GATHER_BUDGET // max(1, k_len * dqk))
    for b in range(batch):
        for start in range(0, t_len, step):
            stop = min(t_len, start + step)
            idx = indices[b, start:stop].long()  # [t, K]
            rows = kv[b][idx.clamp_min(0)].float()  # [t, K, Dqk]
            scores = torch.einsum("thd,tkd->thk", q[b, start:stop].float(), rows) * scale
            scores.masked_fill_((idx < 0).unsqueeze(1), float("-inf"))
            probs = torch.softmax(scores, dim=-1).nan_to_num_(0.0)  # all-masked rows -> zeros
            out[b, start:stop] = torch.einsum("thk,tkc->thc", probs, rows[..., :dv]).to(q.dtype)
    return out


def sparse_mla(q: torch.Tensor, kv: torch.Tensor, indices: torch.Tensor, scale: float, dv: int) -> torch.Tensor:
    """Dispatcher for sparse absorbed MLA (see sparse_mla_ref): the Triton kernel on CUDA."""
    if q.is_cuda:
        from dsagent.kernels.sparse_mla_triton import sparse_mla_triton

        return sparse_mla_triton(q, kv, indices.to(torch.int32), scale, dv)
    return sparse_mla_ref(q, kv, indices, scale, dv)
