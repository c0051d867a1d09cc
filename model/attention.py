"""Multi-head latent attention (MLA) with optional DSA sparse selection.

Two equivalent forms: "expanded" up-projects the cached latents with kv_b_proj and runs ordinary
multi-head attention (the prefill form); "absorbed" folds kv_b_proj into the query and the output and
attends over the cached latent rows directly through `sparse_mla` (the decode form).

Shape legend: T new tokens, S cached tokens (after this append), H heads, C kv_lora_rank, R RoPE dims,
Dn/Dv no-RoPE key/value head dims, D model dim, K selected keys per query.
"""

from __future__ import annotations

import torch
from dsagent.kernels.fp8 import fp8_roundtrip
from dsagent.kernels.sparse_mla import sparse_mla
from dsagent.model.cache import LayerCache, write_rows
from dsagent.model.config import ModelConfig
from dsagent.model.indexer import Indexer
from dsagent.model.layers import Linear, apply_rope, rms_norm

# Elements of the [t, H, S] score block the expanded form holds at once.
_SCORE_BUDGET = 1 << 24


class MLA:
    def __init__(
        self,
        config: ModelConfig,
        q_a: Linear | None,
        q_a_norm: torch.Tensor | None,
        q_b: Linear,
        kv_a: Linear,
        kv_a_norm: torch.Tensor,
        kv_b: Linear,
        o: Linear,
        indexer: Indexer | None,
    ):
        self.heads = q_b.out_features // config.qk_head_dim  # all heads, or this rank's share of them
        self.nope, self.rope, self.dv = config.qk_nope_head_dim, config.qk_rope_head_dim, config.v_head_dim
        self.rank, self.eps, self.scale = config.kv_lora_rank, config.rms_norm_eps, config.softmax_scale
        self.q_a, self.q_a_norm, self.q_b = q_a, q_a_norm, q_b  # q_b is q_proj when q_lora_rank is null
        self.kv_a, self.kv_a_norm, self.kv_b, self.o = kv_a, kv_a_norm, kv_b, o
        self.indexer = indexer

    def __call__(
        self,
        x: torch.Tensor,
        start: int | torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        cache: LayerCache,
        form: str,
        dense: bool = False,
        trace: dict | None = None,
    ) -> torch.Tensor:
        """x [T, D] (normed) at positions start.. -> [T, D]. Writes this step's rows into `cache`.

        `start` may be the positions [T] as a device tensor (Transformer.step_at): then attention reads the
        whole allocated cache with the rows past each position masked (absorbed form only)."""
        t_len = x.shape[0]
        qr = None
        if self.q_a is not None:
            qr = rms_norm(self.q_a(x), self.q_a_norm, self.eps)
        q = self.q_b(x if qr is None else qr).view(t_len, self.heads, self.nope + self.rope)
        q_nope, q_pe = q.split([self.nope, self.rope], dim=-1)
        q_pe = apply_rope(q_pe, cos, sin, interleaved=True)

        latent, k_pe = self.kv_a(x).split([self.rank, self.rope], dim=-1)
        latent = rms_norm(latent, self.kv_a_norm, self.eps)
        # The latent goes through fp8 and back, as a deployment with an fp8 cache would store it.
        latent = fp8_roundtrip(latent)
        kv = write_rows(cache.kv, start, torch.cat([latent, apply_rope(k_pe, cos, sin, interleaved=True)], dim=-1))

        selected = None
        if self.indexer is not None:
            selected = self.indexer(x, qr, start, cos, sin, cache)  # [T, K]
            if trace is not None:
                trace["topk"] = selected
        if dense:
            selected = None
        if form == "expanded":
            out = self._expanded(q_nope, q_pe, kv, start, selected)
        else:
            out = self._absorbed(q_nope, q_pe, kv, start, selected)
        return self.o(out.flatten(1))

    def _expanded(
        self, q_nope: torch.Tensor, q_pe: torch.Tensor, kv: torch.Tensor, start: int, selected: torch.Tensor | None
    ) -> torch.Tensor:
        """Up-project every cached latent and attend with per-head keys; rounding follows bf16 attention."""
        t_len, s_len, dtype = q_nope.shape[0], kv.shape[0], q_nope.dtype
        expanded = self.kv_b(kv[:, : self.rank]).view(s_len, self.heads, self.nope + self.dv)
        k_nope, v = expanded.split([self.nope, self.dv], dim=-1)
        k = torch.cat([k_nope, kv[:, None, self.rank :].expand(-1, self.heads, -1)], dim=-1).float()  # [S, H, Dqk]
        q = torch.cat([q_nope, q_pe], dim=-1).float()  # [T, H, Dqk]
        v = v.float()
        allowed = _allowed(t_len, s_len, start, selected, q.device)  # [T, S]
        out = torch.empty(t_len, self.heads, self.dv, dtype=dtype, device=q.device)
        step = max(1, _SCORE_BUDGET // (self.heads * s_len))
        for a in range(0, t_len, step):
            b = min(t_len, a + step)
            scores = torch.einsum("thd,shd->ths", q[a:b], k).to(dtype) * self.scale
            scores = scores.masked_fill(~allowed[a:b, None, :], float("-inf")).softmax(dim=-1)
            out[a:b] = torch.einsum("ths,shd->thd", scores.float(), v).to(dtype)
        return out

    def _absorbed(
        self,
        q_nope: torch.Tensor,
        q_pe: torch.Tensor,
        kv: torch.Tensor,
        start: int | torch.Tensor,
        selected: torch.Tensor | None,
    ) -> torch.Tensor:
        t_len, s_len, dtype = q_nope.shape[0], kv.shape[0], q_nope.dtype
        w = self.kv_b.dense(dtype).view(self.heads, self.nope + self.dv, self.rank)  # [H, Dn+Dv, C]
        q_latent = torch.einsum("thd,hdc->thc", q_nope, w[:, : self.nope])  # [T, H, C]
        q = torch.cat([q_latent, q_pe], dim=-1)  # [T, H, C+R]
        if selected is None:  # dense attention: every visible key
            pos = torch.arange(s_len, device=q.device, dtype=torch.int32).expand(t_len, s_len)
            if not isinstance(start, torch.Tensor):
                start = torch.arange(start, start + t_len, device=q.device)
            visible = start.unsqueeze(1)  # [T, 1] the last key position each query sees
            selected = pos.masked_fill(pos > visible, -1)
        out = sparse_mla(q[None], kv[None], selected[None], self.scale, self.rank)[0]  # [T, H, C]
        return torch.einsum("thc,hdc->thd", out, w[:, self.nope :])  # [T, H, Dv]


def _allowed(t_len: int, s_len: int, start: int, selected: torch.Tensor | None, device) -> torch.Tensor:
    """[T, S] bool: causal, and restricted to the indexer's selection when there is one."""
    causal = torch.arange(s_len, device=device)[None, :] <= torch.arange(start, start + t_len, device=device)[:, None]
    if selected is None:
        return causal
    chosen = torch.zeros(t_len, s_len + 1, dtype=torch.bool, device=device)
    chosen.scatter_(1, selected.long().clamp_min(-1) % (s_len + 1), True)  # -1 lands in the spare column
    return causal & chosen[:, :s_len]
