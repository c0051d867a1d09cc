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
from dsagent.kernels.head_matmul import head_matmul
from dsagent.kernels.sparse_mla import sparse_mla
from dsagent.model.cache import LayerCache, write_rows
from dsagent.model.config import ModelConfig
from dsagent.model.indexer import Indexer
from dsagent.model.layers import Linear, apply_rope, capturing_decode, fuse_rows, rms_norm, side_stream

# Elements of the [t, H, S] score block the expanded form holds at once.
_SCORE_BUDGET = 1 << 24
# Up to this many tokens (decode) q_a, the indexer's wk and kv_a run as one GEMM. Above it they run apart: the
# large q_a then goes to cuBLAS, which the fused width (not a multiple of 512) would not.
_FUSED_INPUT_ROWS = 16
# Up to this many tokens (decode), in a step being captured into a CUDA graph, the indexer runs on a side stream
# beside the rest of the attention's inputs (MLA._beside_indexer): one full-size layer's 128K step 0.377 against
# 0.384 ms on H100, the same output bits. 0 turns it off.
OVERLAP_ROWS = 16


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
        # q_a, the indexer's wk and kv_a all read x: stacked into one weight (their own become views of it)
        inputs = [layer for layer in (q_a, indexer and indexer.wk, kv_a) if layer is not None]
        self.x_proj, self.x_split = fuse_rows(inputs), [layer.out_features for layer in inputs]
        # q_b and the indexer's wq_b both read qr: one GEMM at every size (V3.2's stacked width, like each of
        # theirs, is a multiple of 512, so prefill keeps cuBLAS)
        self.qr_proj = fuse_rows([q_b, indexer.wq_b]) if q_a is not None and indexer is not None else None

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
        qa, index_k, kv_a = self._project_inputs(x)
        qr = None if qa is None else rms_norm(qa, self.q_a_norm, self.eps)
        if form == "absorbed" and qr is not None and self.indexer is not None and capturing_decode(x, OVERLAP_ROWS):
            return self._beside_indexer(x, qr, start, (cos, sin), cache, kv_a, index_k, dense, trace)
        q, index_q = self._project_queries(x if qr is None else qr)
        q_nope, q_pe = self._split_heads(q)
        kv = self._write_row(kv_a, start, cos, sin, cache)
        selected = None
        if self.indexer is not None:
            selected = self.indexer(x, qr, start, cos, sin, cache, index_q, index_k)  # [T, K]
            if trace is not None:
                trace["topk"] = selected
        if dense:
            selected = None
        if form == "expanded":
            out = self._expanded(q_nope, apply_rope(q_pe, cos, sin, interleaved=True), kv, start, selected)
        else:
            out = self._absorbed(self._absorbed_query(q_nope, q_pe, (cos, sin)), kv, start, selected)
        return self.o(out.flatten(1))

    def _beside_indexer(self, x, qr, start, rope, cache, kv_a, index_k, dense, trace) -> torch.Tensor:
        """A captured decode step with the indexer (its wq_b, scores and top-k) on a side stream, beside q_b,
        the cache row and the absorbed query on the main one -> [T, D]. The top-k is barrier-bound, not
        bandwidth-bound, so the main stream's GEMMs stream their weights meanwhile. Every tensor either stream
        touches is freed only after the join (or, made on the side stream, reused there only after the next
        fork), so no block is reused early."""
        main, side = torch.cuda.current_stream(x.device), side_stream(x.device)
        side.wait_stream(main)
        with torch.cuda.stream(side):
            selected = self.indexer(x, qr, start, *rope, cache, None, index_k)  # [T, K]
        q_nope, q_pe = self._split_heads(self.q_b(qr))
        kv = self._write_row(kv_a, start, *rope, cache)
        q = self._absorbed_query(q_nope, q_pe, rope)
        main.wait_stream(side)
        if trace is not None:
            trace["topk"] = selected
        return self.o(self._absorbed(q, kv, start, None if dense else selected).flatten(1))

    def _split_heads(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q [T, H * (Dn+R)] -> (q_nope [T, H, Dn], q_pe [T, H, R]), views."""
        return q.view(q.shape[0], self.heads, self.nope + self.rope).split([self.nope, self.rope], dim=-1)

    def _write_row(self, kv_a, start, cos, sin, cache: LayerCache) -> torch.Tensor:
        """kv_a [T, C+R] -> this step's cache rows written -> the cache [S, C+R]."""
        latent, k_pe = kv_a.split([self.rank, self.rope], dim=-1)
        row = torch.empty(kv_a.shape[0], self.rank + self.rope, dtype=kv_a.dtype, device=kv_a.device)
        # The latent goes through fp8 and back, as a deployment with an fp8 cache would store it.
        fp8_roundtrip(rms_norm(latent, self.kv_a_norm, self.eps), out=row[:, : self.rank])
        apply_rope(k_pe, cos, sin, interleaved=True, out=row[:, self.rank :])
        return write_rows(cache.kv, start, row)

    def _project_queries(self, qr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(q_b(qr), the indexer's wq_b(qr) or None when the indexer should compute it)."""
        if self.qr_proj is None:
            return self.q_b(qr), None
        q, index_q = self.qr_proj(qr).split([self.q_b.out_features, self.indexer.wq_b.out_features], dim=-1)
        return q, index_q

    def _project_inputs(self, x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor]:
        """(q_a(x) or None, the indexer's wk(x) or None when the indexer should compute it, kv_a(x))."""
        if self.x_proj is None or x.shape[0] > _FUSED_INPUT_ROWS:
            return None if self.q_a is None else self.q_a(x), None, self.kv_a(x)
        parts = list(self.x_proj(x).split(self.x_split, dim=-1))
        qa = parts.pop(0) if self.q_a is not None else None
        index_k = parts.pop(0) if self.indexer is not None else None
        return qa, index_k, parts[0]

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

    def _absorbed_query(self, q_nope, q_pe, rope) -> torch.Tensor:
        """-> q = [q_nope W_uk, rope(q_pe)] [T, H, C+R], each part written in place (no concatenation)."""
        q = torch.empty(q_nope.shape[0], self.heads, self.rank + self.rope, dtype=q_nope.dtype, device=q_nope.device)
        self._kv_b_heads(q_nope, 0, self.nope, False, out=q[..., : self.rank])
        apply_rope(q_pe, *rope, interleaved=True, out=q[..., self.rank :])
        return q

    def _kv_b_heads(self, x, first: int, count: int, transpose: bool, out=None) -> torch.Tensor:
        """x times rows first..first+count of each head's block of kv_b's weight (transposed: x [T, H, C])."""
        kv_b, dtype = self.kv_b, x.dtype
        return head_matmul(x, kv_b.weight, kv_b.scale, lambda: kv_b.dense(dtype), first, count, transpose, out)

    def _absorbed(self, q, kv, start, selected: torch.Tensor | None) -> torch.Tensor:
        """q [T, H, C+R] over the cached latent rows kv [S, C+R] -> [T, H, Dv]."""
        t_len, s_len = q.shape[0], kv.shape[0]
        if selected is None:  # dense attention: every visible key
            pos = torch.arange(s_len, device=q.device, dtype=torch.int32).expand(t_len, s_len)
            if not isinstance(start, torch.Tensor):
                start = torch.arange(start, start + t_len, device=q.device)
            visible = start.unsqueeze(1)  # [T, 1] the last key position each query sees
            selected = pos.masked_fill(pos > visible, -1)
        out = sparse_mla(q[None], kv[None], selected[None], self.scale, self.rank)[0]  # [T, H, C]
        return self._kv_b_heads(out, self.nope, self.dv, True)  # [T, H, Dv]


def _allowed(t_len: int, s_len: int, start: int, selected: torch.Tensor | None, device) -> torch.Tensor:
    """[T, S] bool: causal, and restricted to the indexer's selection when there is one."""
    causal = torch.arange(s_len, device=device)[None, :] <= torch.arange(start, start + t_len, device=device)[:, None]
    if selected is None:
        return causal
    chosen = torch.zeros(t_len, s_len + 1, dtype=torch.bool, device=device)
    chosen.scatter_(1, selected.long().clamp_min(-1) % (s_len + 1), True)  # -1 lands in the spare column
    return causal & chosen[:, :s_len]
