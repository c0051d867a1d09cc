"""The DSA lightning indexer: scores every cached key for each query and keeps the top index_topk.

Shape legend: T new tokens, S cached tokens (after this append), Hi indexer heads, Di indexer head dim,
R RoPE dims, D model dim, Q q_lora_rank.
"""

from __future__ import annotations

import torch
from dsagent.kernels.indexer import hadamard_quant, index_select
from dsagent.model.cache import LayerCache, write_rows
from dsagent.model.config import ModelConfig
from dsagent.model.layers import Linear, apply_rope, layer_norm, matmul_fp32


class Indexer:
    def __init__(
        self,
        config: ModelConfig,
        wq_b: Linear,
        wk: Linear,
        k_norm_weight: torch.Tensor,
        k_norm_bias: torch.Tensor,
        weights_proj: torch.Tensor,
        interleaved_rope: bool = False,
    ):
        self.heads, self.head_dim = config.index_n_heads, config.index_head_dim
        self.rope_dim, self.topk = config.qk_rope_head_dim, config.index_topk
        self.wq_b, self.wk = wq_b, wk  # [Hi*Di, Q], [Di, D]
        self.k_norm_weight, self.k_norm_bias = k_norm_weight, k_norm_bias  # [Di] fp32
        self.weights_proj = weights_proj  # [Hi, D] fp32
        self.interleaved_rope = interleaved_rope  # a deliberately wrong variant, for tests

    def _rope_first(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        # The indexer puts the RoPE part first in each head and rotates half-split pairs; x is this step's own
        # projection, so its RoPE part is rotated in place.
        pe = x[..., : self.rope_dim]
        apply_rope(pe, cos, sin, self.interleaved_rope, out=pe)
        return x

    def __call__(
        self,
        x: torch.Tensor,
        qr: torch.Tensor,
        start: int | torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        cache: LayerCache,
        q_proj: torch.Tensor | None = None,
        k_proj: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x [T, D], qr [T, Q] -> selected key positions [T, index_topk] int32 (-1 = none). `q_proj`, `k_proj`:
        wq_b(qr) and wk(x) when the caller has them already (computed in one GEMM with its own projections).

        `start` may be the positions [T] as a device tensor: every allocated key is scored and the causal
        mask is applied on the device (no host value changes with the position)."""
        t_len = x.shape[0]
        q = self.wq_b(qr) if q_proj is None else q_proj
        q = self._rope_first(q.view(t_len, self.heads, self.head_dim), cos, sin)
        k = layer_norm(self.wk(x) if k_proj is None else k_proj, self.k_norm_weight, self.k_norm_bias)
        k = self._rope_first(k, cos, sin)
        q_fp8, q_scale = hadamard_quant(q)  # [T, Hi, Di], [T, Hi, 1]
        k_fp8, k_scale = hadamard_quant(k)  # [T, Di], [T, 1]
        keys = write_rows(cache.index_k, start, k_fp8)
        key_scales = write_rows(cache.index_scale, start, k_scale[:, 0])
        weights = matmul_fp32(x, self.weights_proj) * self.heads**-0.5  # [T, Hi]
        weights = weights * q_scale[..., 0] * self.head_dim**-0.5
        return index_select(q_fp8, weights, keys, key_scales, start, self.topk)  # rows past a position masked
