"""The decoder stack: embedding, blocks (MLA + dense MLP or MoE), final norm, LM head.

The residual stream is added in fp32 and rounded to the activation dtype at every block, and each
norm reads the unrounded fp32 sum, as the DeepSeek-V3.2 reference does.
Shape legend: T tokens, D model dim, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from dsagent.model.attention import MLA
from dsagent.model.cache import KVCache, LayerCache
from dsagent.model.config import ForwardOptions, ModelConfig
from dsagent.model.ffn import MLP, MoE
from dsagent.model.layers import Rope, add_rms_norm, rms_norm
from dsagent.model.parallel import ParallelContext, embed_tokens, lm_logits


@dataclass
class Block:
    attn_norm: torch.Tensor  # [D] fp32
    attn: MLA
    ffn_norm: torch.Tensor  # [D] fp32
    ffn: MLP | MoE

    def __call__(
        self,
        x: torch.Tensor,
        residual: torch.Tensor | None,
        start: int | torch.Tensor,  # the first position, or the positions [T] on the device (step_at)
        rope: tuple[torch.Tensor, torch.Tensor],
        cache: LayerCache,
        form: str,
        options: ForwardOptions,
        eps: float,
        trace: dict | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, residual) -> (this block's feed-forward output, the residual stream before it)."""
        if residual is None:
            x, residual = rms_norm(x, self.attn_norm, eps), x
        else:
            x, residual = add_rms_norm(x, residual, self.attn_norm, eps)
        dense = options.variant == "dense_attention"
        x = self.attn(x, start, *rope, cache, form, dense=dense, trace=trace)
        x, residual = add_rms_norm(x, residual, self.ffn_norm, eps)
        x = self.ffn(x, trace) if isinstance(self.ffn, MoE) else self.ffn(x)
        return x, residual


class Transformer:
    def __init__(
        self,
        config: ModelConfig,
        embed: torch.Tensor,
        blocks: list[Block],
        norm: torch.Tensor,
        head: torch.Tensor,
        options: ForwardOptions,
        device: torch.device | str,
        parallel: ParallelContext | None = None,
    ):
        self.config, self.options = config, options
        self.embed, self.blocks, self.norm, self.head = embed, blocks, norm, head  # head [V, D]
        self.rope = Rope(config, device)
        self.device = torch.device(device)
        self.parallel = parallel or ParallelContext()  # world size 1: the whole model in this process
        cost = 2 * config.kv_lora_rank + config.qk_rope_head_dim - config.qk_head_dim - config.v_head_dim
        # Appends longer than this are cheaper in the expanded form even on top of a long cache.
        self.expand_threshold = config.kv_lora_rank * (config.qk_nope_head_dim + config.v_head_dim) // max(cost, 1)

    @property
    def dtype(self) -> torch.dtype:
        return self.embed.dtype

    def attention_form(self, t_len: int, start: int) -> str:
        choice = self.options.attention
        if choice != "auto":
            return choice
        # On CPU a fresh multi-token prefill uses the expanded form, as the reference computes it.
        if self.device.type == "cpu" and t_len > 1 and (start == 0 or t_len > self.expand_threshold):
            return "expanded"
        return "absorbed"

    def forward(self, ids: torch.Tensor, cache: KVCache, all_logits: bool = False) -> torch.Tensor:
        """ids [T] at positions cache.length.. -> fp32 logits [V] of the last token ([T, V] if all_logits).

        The cache grows by T tokens.
        """
        start, t_len = cache.length, ids.shape[0]
        cache.ensure(start + t_len)
        rope = self.rope.tables(start, t_len)
        form = self.attention_form(t_len, start)
        x, residual = self.embed_tokens(ids), None
        for block, layer_cache in zip(self.blocks, cache.layers, strict=True):
            x, residual = block(x, residual, start, rope, layer_cache, form, self.options, self.config.rms_norm_eps)
        cache.length = start + t_len
        h, _ = add_rms_norm(x, residual, self.norm, self.config.rms_norm_eps)
        return self.logits(h if all_logits else h[-1])

    def step_at(self, ids: torch.Tensor, positions: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """ids [T] at positions [T] (both on the device) -> fp32 logits [V] of the last token, with no host
        synchronisation, so a CUDA graph can capture it (model/graphs.py). Attention is absorbed and reads
        the whole allocated cache, rows past each position masked. The caller makes room in the cache
        beforehand and sets cache.length afterwards."""
        rope = self.rope.tables(positions, ids.shape[0])
        x, residual = self.embed_tokens(ids), None
        eps = self.config.rms_norm_eps
        for block, layer_cache in zip(self.blocks, cache.layers, strict=True):
            x, residual = block(x, residual, positions, rope, layer_cache, "absorbed", self.options, eps)
        h, _ = add_rms_norm(x, residual, self.norm, eps)
        return self.logits(h[-1])

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        """ids [T] -> embeddings [T, D] (with several ranks, each holds a slice of the vocabulary)."""
        return embed_tokens(self.embed, ids.to(self.device), self.parallel, self.config.vocab_size)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """Final hidden states [..., D] -> fp32 logits [..., V]."""
        return lm_logits(h, self.head, self.parallel, self.config.vocab_size)

    def block_forward(
        self, layer: int, hidden: torch.Tensor, cache: KVCache, start: int = 0, trace: dict | None = None
    ) -> torch.Tensor:
        """Run one block on a given residual stream hidden [T, D] (teacher forcing) -> the stream after it.

        Uses (and fills) layer `layer` of `cache` from position `start`; cache.length is left alone.
        """
        t_len = hidden.shape[0]
        cache.ensure(start + t_len)
        rope = self.rope.tables(start, t_len)
        form = self.attention_form(t_len, start)
        block = self.blocks[layer]
        x, residual = block(
            hidden, None, start, rope, cache.layers[layer], form, self.options, self.config.rms_norm_eps, trace
        )
        return (x.float() + residual.float()).to(hidden.dtype)
