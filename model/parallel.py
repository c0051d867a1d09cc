"""Tensor and expert parallelism over torch.distributed, one process per GPU of one host.

A `ParallelContext` names this process's rank and the group; with world size 1 (the default everywhere)
every function here is the plain single-process computation. With more ranks (see model/shard.py for who
holds what): the attention output projection and the down projection of split MLPs are row-parallel (their
partial sums meet in one all-reduce), the routed experts of a rank and a split shared expert are summed by one
all-reduce per MoE layer, and the embedding / LM head work on vocabulary slices. All-reduces of activations
run in fp32, as the DeepSeek reference does; an all-reduce leaves the same values on every rank, so the
replicated parts (indexer top-k, router) make the same choices everywhere.

Shape legend: T tokens, D model dim, V vocabulary, k experts per token, E experts of this rank.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from dsagent.kernels.moe import fused_moe
from dsagent.model.ffn import MLP, MoE
from dsagent.model.layers import Linear, matmul_fp32

if TYPE_CHECKING:
    from dsagent.model.shard import ShardPlan
    from dsagent.model.transformer import Transformer

# Up to this many (token, expert) pairs on a GPU, non-local pairs go to a local expert with weight 0 rather
# than being filtered out: filtering needs the count on the host (a sync per layer), padding costs ~nothing.
_PAD_PAIRS = 256


@dataclass
class ParallelContext:
    rank: int = 0
    world: int = 1
    group: Any = None  # process group of the model's collectives (None: the default group)
    skip_comm: bool = False  # benchmarks only: collectives do nothing, to time a step's compute alone

    def all_reduce(self, x: torch.Tensor) -> torch.Tensor:
        """Sum x over ranks in place; returns x."""
        if self.world > 1 and not self.skip_comm:
            import torch.distributed as dist

            dist.all_reduce(x, group=self.group)
        return x

    def reduce_sum(self, partial: torch.Tensor) -> torch.Tensor:
        """Partial products of a row-parallel layer -> their sum, added in fp32, in the partial's dtype."""
        if self.world == 1:
            return partial
        return self.all_reduce(partial.float()).to(partial.dtype)

    def gather_last(self, x: torch.Tensor, n: int) -> torch.Tensor:
        """Each rank's ceil(n / world) slice of the last dim (the last may be short) -> all n, in rank order."""
        if self.world == 1:
            return x
        per = -(-n // self.world)
        if x.shape[-1] < per:
            x = torch.nn.functional.pad(x, (0, per - x.shape[-1]))
        if self.skip_comm:
            parts = [x] * self.world
        else:
            import torch.distributed as dist

            parts = [torch.empty_like(x) for _ in range(self.world)]
            dist.all_gather(parts, x.contiguous(), group=self.group)
        return torch.cat(parts, dim=-1)[..., :n]


def embed_tokens(table: torch.Tensor, ids: torch.Tensor, ctx: ParallelContext, vocab: int) -> torch.Tensor:
    """ids [T] -> rows [T, D] of the embedding; `table` holds this rank's vocabulary rows."""
    if ctx.world == 1:
        return table[ids]
    start = min(vocab, ctx.rank * -(-vocab // ctx.world))
    local = ids - start
    inside = (local >= 0) & (local < table.shape[0])
    rows = table[local.clamp(0, max(0, table.shape[0] - 1))].masked_fill(~inside.unsqueeze(-1), 0)
    return ctx.all_reduce(rows)  # exactly one rank holds each id, so the sum is exact in any dtype


def lm_logits(h: torch.Tensor, head: torch.Tensor, ctx: ParallelContext, vocab: int) -> torch.Tensor:
    """h [..., D] -> fp32 logits [..., V]; `head` holds this rank's vocabulary rows."""
    return ctx.gather_last(matmul_fp32(h, head), vocab)


class RowParallelLinear(Linear):
    """A linear layer whose input features are split over ranks: each computes a partial product, one
    all-reduce sums them."""

    def __init__(self, inner: Linear, ctx: ParallelContext):
        super().__init__(inner.weight, inner.scale)
        self.ctx = ctx

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.ctx.reduce_sum(super().__call__(x))


class ParallelMoE(MoE):
    """This rank's block of routed experts (ids first .. first+E-1) plus the shared expert, split or replicated.

    Every rank routes every token (same router, same input); each computes the pairs that chose its experts,
    and one fp32 all-reduce adds the ranks' partial outputs (with a split shared expert's partial output)."""

    def __init__(self, moe: MoE, ctx: ParallelContext, first: int, shared_split: bool):
        super().__init__(moe.gate, moe.w13, moe.w2, moe.w13_scale, moe.w2_scale, moe.shared)
        self.ctx, self.first, self.shared_split = ctx, first, shared_split

    def __call__(self, x: torch.Tensor, trace: dict | None = None) -> torch.Tensor:
        weights, ids = self.gate(x)  # [T, k] each
        if trace is not None:
            trace["experts"], trace["weights"] = ids, weights
        y = self._local(x, ids, weights, pad=x.is_cuda and ids.numel() <= _PAD_PAIRS)  # [T, D] fp32
        if self.shared is not None and self.shared_split:
            y += self.shared(x).float()
        self.ctx.all_reduce(y)
        if self.shared is not None and not self.shared_split:
            y += self.shared(x).float()
        return y.to(x.dtype)

    def _local(self, x: torch.Tensor, ids: torch.Tensor, weights: torch.Tensor, pad: bool) -> torch.Tensor:
        """The routed experts of this rank on their (token, slot) pairs -> [T, D] fp32. pad: keep all T x k
        pairs, other ranks' pairs sent to local expert 0 with weight 0; else gather only this rank's pairs."""
        experts = self.w13.shape[0]
        local = ids - self.first
        mine = (local >= 0) & (local < experts)
        scales = (self.w13_scale, self.w2_scale)
        if pad:
            local = local.masked_fill(~mine, 0)
            return fused_moe(x, local, weights.masked_fill(~mine, 0.0), self.w13, self.w2, *scales).float()
        y = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
        # the pairs slot by slot (tokens ascending within a slot): the mask read transposed
        slots, tokens = mine.t().nonzero(as_tuple=True)
        if tokens.numel():
            pairs = fused_moe(
                x[tokens], local[tokens, slots, None], weights[tokens, slots, None], self.w13, self.w2, *scales
            )  # [P, D]: one expert output per pair, rounded as a single-GPU run rounds it
            # one add per slot: within a slot no token repeats, so on CUDA no two atomics meet on one element
            # and the sum comes out the same on every run. The slots' sizes come in one host read, not two
            # boolean gathers (a host sync each) per slot.
            sizes = mine.sum(0).tolist()
            for t, p in zip(tokens.split(sizes), pairs.split(sizes), strict=True):
                y.index_add_(0, t, p.float())
        return y


def parallelize(model: Transformer, ctx: ParallelContext, plan: ShardPlan) -> Transformer:
    """Wrap the layers of a model loaded with `plan`'s slices so their partial results meet across ranks."""
    for block in model.blocks:
        block.attn.o = RowParallelLinear(block.attn.o, ctx)
        if isinstance(block.ffn, MoE):
            block.ffn = ParallelMoE(block.ffn, ctx, plan.experts.start, plan.shared_split)
        elif isinstance(block.ffn, MLP) and plan.dense_split:
            block.ffn.down = RowParallelLinear(block.ffn.down, ctx)
    model.parallel = ctx
    return model
