"""Sparse multi-head latent attention in the absorbed form (PyTorch reference + dispatcher).

Every query head attends, over the key rows its query selected, to the cached rows
`kv[s] = [normalised latent (dv values) | RoPE key]`; the values are the latent part. The caller has
already absorbed the key up-projection into q and applies the value up-projection afterwards.
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)

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
    """Dispatcher for sparse absorbed MLA (see sparse_mla_ref): on CUDA a Gluon kernel where they apply (Hopper,
    V3.2 shapes, bf16), else the Triton kernel."""
    if not q.is_cuda:
        return sparse_mla_ref(q, kv, indices, scale, dv)
    from dsagent.kernels.sparse_mla_triton import sparse_mla_triton
    from triton.compiler.errors import CompilationError

    indices = indices.to(torch.int32)
    gluon = _gluon_kernel(q, kv, dv)
    if gluon is not None:
        try:
            return gluon(q, kv, indices, scale, dv)
        except CompilationError as err:  # a Triton release whose Gluon names moved again
            _GLUON_BROKEN.append(err)
            log.warning("sparse MLA: the Gluon kernels do not build with this Triton (%s); using Triton's", err)
    return sparse_mla_triton(q, kv, indices, scale, dv)


_GLUON_BROKEN: list[Exception] = []


def _gluon_kernel(q: torch.Tensor, kv: torch.Tensor, dv: int):
    """The Hopper kernel for V3.2's shapes, or None where it does not apply or cannot be built. All three measured
    on H100: where the programs (query, 64 heads) fill two waves or more (prefill), the kernel whose warpgroups
    split scoring from values (4096 queries: 410 TFLOP/s against 354 for the Gluon kernel); where they fill most
    of one wave (decode of a batch), the same kernel with 32-row steps gathered 3 steps ahead (batch 64: 117 us
    against 122); with fewer programs, whose keys are split, the Gluon kernel (batch 1 over 128K rows: 22 us
    against 25)."""
    if _GLUON_BROKEN:
        return None
    try:
        from dsagent.kernels.fp8_triton import _sm_count
        from dsagent.kernels.sparse_mla_gluon import H_BLOCK, gluon_fits, sparse_mla_gluon
        from dsagent.kernels.sparse_mla_gluon_roles import sparse_mla_gluon_roles, sparse_mla_gluon_roles_decode
        from dsagent.kernels.sparse_mla_triton import splits_pay
    except ImportError:  # a Triton without Gluon
        return None
    if not gluon_fits(q, kv, dv):
        return None
    programs, sms = q.shape[0] * q.shape[1] * -(-q.shape[2] // H_BLOCK), _sm_count(q.device)
    if programs >= 2 * sms:
        return sparse_mla_gluon_roles
    return sparse_mla_gluon if splits_pay(programs, sms) else sparse_mla_gluon_roles_decode
