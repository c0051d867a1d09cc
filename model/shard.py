"""Which part of each checkpoint tensor one rank of a multi-GPU engine holds, and reading only that part.

Attention heads are split over ranks (q/kv up-projections by output rows, the output projection by input
columns), the routed experts in contiguous blocks, dense MLPs and the shared expert by their intermediate
dim, the embedding and LM head by vocabulary rows. Everything else (low-rank down-projections, norms, the
indexer, the router) is replicated. fp8 block scales are sliced with their weights: a weight slice
[start, stop) along a dim takes the scale blocks [start // 128, ceil(stop / 128)), which is only right when
the slice starts on a block boundary or stays inside one block; splits are chosen so that it does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from dsagent.model.config import ConfigError, ModelConfig

BLOCK = 128  # fp8 weight scale block (both dims)


@dataclass(frozen=True)
class Split:
    dim: int  # 0: output rows, 1: input columns
    start: int
    stop: int

    def blocks(self) -> Split:
        """The matching slice of the 128x128 scale grid."""
        return Split(self.dim, self.start // BLOCK, -(-self.stop // BLOCK))

    @property
    def size(self) -> int:
        return self.stop - self.start


def span(n: int, rank: int, world: int) -> tuple[int, int]:
    """Rank's part [start, stop) of n items split as evenly as possible (ceil-sized, the last may be short)."""
    per = -(-n // world)
    return min(n, rank * per), min(n, (rank + 1) * per)


_ATTN = re.compile(r"\.self_attn\.(q_b_proj|q_proj|kv_b_proj|o_proj)\.weight$")
_DENSE = re.compile(r"\.mlp\.(gate_proj|up_proj|down_proj)\.weight$")
_SHARED = re.compile(r"\.mlp\.shared_experts\.(gate_proj|up_proj|down_proj)\.weight$")
_VOCAB = ("model.embed_tokens.weight", "lm_head.weight")


class ShardPlan:
    """The slices rank `rank` of `world` loads. Raises ConfigError when the model cannot be split that way."""

    def __init__(self, config: ModelConfig, rank: int, world: int):
        problems = split_problems(config, world)
        if problems:
            raise ConfigError(f"cannot split this model over {world} GPUs: {'; '.join(problems)}")
        self.config, self.rank, self.world = config, rank, world
        heads = config.num_attention_heads // world
        self.heads = range(rank * heads, (rank + 1) * heads)
        experts = (config.n_routed_experts or 0) // world
        self.experts = range(rank * experts, (rank + 1) * experts)
        self.vocab = span(config.vocab_size, rank, world)
        self.dense_split = _mlp_splits(config, config.intermediate_size, world)
        self.shared_split = bool(config.n_shared_experts) and _mlp_splits(
            config, config.n_shared_experts * config.moe_intermediate_size, world
        )

    def split(self, name: str) -> Split | None:
        """The slice of tensor `name` this rank holds, or None for the whole tensor (replicated).

        Routed experts are whole tensors too: a rank simply reads only the experts in `self.experts`."""
        if name.endswith(".weight_scale_inv"):
            weight = self.split(name.removesuffix("_scale_inv"))
            return None if weight is None else weight.blocks()
        if name in _VOCAB:
            return Split(0, *self.vocab)
        c = self.config
        if match := _ATTN.search(name):
            kind = match.group(1)
            per_head = {"kv_b_proj": c.qk_nope_head_dim + c.v_head_dim, "o_proj": c.v_head_dim}.get(kind, c.qk_head_dim)
            return Split(1 if kind == "o_proj" else 0, self.heads.start * per_head, self.heads.stop * per_head)
        if match := _SHARED.search(name):
            inter = c.n_shared_experts * c.moe_intermediate_size
            return self._mlp(match.group(1), inter) if self.shared_split else None
        if match := _DENSE.search(name):
            return self._mlp(match.group(1), c.intermediate_size) if self.dense_split else None
        return None

    def _mlp(self, kind: str, inter: int) -> Split:
        per = inter // self.world
        return Split(1 if kind == "down_proj" else 0, self.rank * per, (self.rank + 1) * per)


def _mlp_splits(config: ModelConfig, inter: int, world: int) -> bool:
    """Split an MLP's intermediate dim only where each part is whole 128-blocks (fp8): the input of the down
    projection is quantised per 128 values, so a finer split would round differently from one GPU. MLPs that
    cannot split (only small ones) are replicated."""
    if inter % world:
        return False
    return not config.is_fp8 or (inter // world) % BLOCK == 0


def split_problems(config: ModelConfig, world: int) -> list[str]:
    """Why `config` cannot be split over `world` ranks (empty when it can)."""
    if world < 1:
        return [f"the GPU count must be at least 1, got {world}"]
    problems = []
    heads = config.num_attention_heads
    if heads % world:
        problems.append(f"{heads} attention heads do not divide by {world}")
    elif config.is_fp8:
        h = heads // world
        for what, rows in (("q", config.qk_head_dim), ("kv_b", config.qk_nope_head_dim + config.v_head_dim)):
            if (h * rows) % BLOCK:
                problems.append(f"{h} heads x {rows} {what} rows per GPU is not a whole number of 128-blocks")
        if (h * config.v_head_dim) % BLOCK:
            problems.append(f"{h} heads x {config.v_head_dim} output columns per GPU is not whole 128-blocks")
    if config.n_routed_experts and config.n_routed_experts % world:
        problems.append(f"{config.n_routed_experts} routed experts do not divide by {world}")
    if config.vocab_size < world:
        problems.append(f"vocabulary {config.vocab_size} is smaller than {world}")
    return problems


def read_slice(handle, name: str, split: Split) -> torch.Tensor:
    """Only `split` of tensor `name` from an open safetensors file (or any object with get_tensor)."""
    if hasattr(handle, "get_slice"):
        part = handle.get_slice(name)
        sliced = part[split.start : split.stop] if split.dim == 0 else part[:, split.start : split.stop]
        return sliced.contiguous()
    full = handle.get_tensor(name)
    return full.narrow(split.dim, split.start, split.size).clone()  # a copy: the full tensor is dropped
