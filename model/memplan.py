"""The per-GPU memory plan of a multi-GPU engine, from the config alone: each GPU's share of the weights (as
model/shard.py splits them), the KV cache per token on each GPU and the longest context that fits.

The MLA cache is not split: every head reads the whole latent of every token, so each GPU keeps the full
per-token cache (latent + RoPE key + indexer key) of every layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from dsagent.model.config import ModelConfig, config_from_dict
from dsagent.model.presets import tensor_specs
from dsagent.model.shard import ShardPlan, split_problems
from dsagent.model.sizing import _FP32_ON_LOAD, size_model

DEFAULT_RESERVE = 4 * 2**30  # CUDA context, NCCL buffers, activations and logits of a step


@dataclass(frozen=True)
class GpuPlan:
    gpus: int
    gpu_memory: int  # bytes per GPU
    reserve: int  # bytes per GPU kept free for everything but weights and KV cache
    weight_bytes: int  # per GPU: rank 0's share, the largest
    kv_bytes_per_token: int  # per GPU (the cache is replicated)
    problem: str | None = None  # why the model cannot be split over this many GPUs

    @property
    def kv_budget(self) -> int:
        """Bytes per GPU left for the KV cache (negative when the weights alone do not fit)."""
        return self.gpu_memory - self.reserve - self.weight_bytes

    @property
    def fits(self) -> bool:
        return self.problem is None and self.kv_budget >= self.kv_bytes_per_token

    @property
    def max_context(self) -> int:
        return self.kv_budget // self.kv_bytes_per_token if self.fits else 0


def _linear_bytes(shape: tuple[int, ...], fp8: bool, act_bytes: int) -> int:
    n = math.prod(shape)
    if not fp8:
        return n * act_bytes
    return n + 4 * math.ceil(shape[0] / 128) * math.ceil(shape[1] / 128)  # e4m3 + fp32 block scales


def per_gpu_weight_bytes(config: ModelConfig, gpus: int, act_bytes: int = 2) -> int:
    """Bytes of rank 0's weights when the model is split over `gpus` ranks, as the engine holds them."""
    return _per_gpu_weight_bytes(config.model_dump_json(), gpus, act_bytes)


@lru_cache(maxsize=64)  # a full-size model lists ~48K tensors; plans are asked for again and again
def _per_gpu_weight_bytes(config_json: str, gpus: int, act_bytes: int) -> int:
    import json

    config = config_from_dict(json.loads(config_json))
    plan = ShardPlan(config, 0, gpus)
    total = routed = 0
    for spec in tensor_specs(config):
        if spec.routed:  # never sliced: a rank holds whole experts
            routed += _linear_bytes(spec.shape, config.is_fp8, act_bytes)
            continue
        shape = list(spec.shape)
        split = plan.split(spec.name)
        if split is not None:
            shape[split.dim] = split.size
        if spec.role == "linear":
            total += _linear_bytes(tuple(shape), config.is_fp8, act_bytes)
        else:
            total += math.prod(shape) * (4 if _FP32_ON_LOAD.search(spec.name) else act_bytes)
    return total + routed // gpus  # each rank holds 1/gpus of the routed experts


@lru_cache(maxsize=16)
def _kv_bytes_per_token(config_json: str, act_bytes: int) -> int:
    import json

    return size_model(config_from_dict(json.loads(config_json)), act_bytes).kv_bytes_per_token


def plan_gpus(
    config: ModelConfig, gpus: int, gpu_memory: int, reserve: int = DEFAULT_RESERVE, act_bytes: int = 2
) -> GpuPlan:
    kv = _kv_bytes_per_token(config.model_dump_json(), act_bytes)
    problems = split_problems(config, gpus)
    if problems:
        return GpuPlan(gpus, gpu_memory, reserve, 0, kv, "; ".join(problems))
    return GpuPlan(gpus, gpu_memory, reserve, per_gpu_weight_bytes(config, gpus, act_bytes), kv)


def fewest_gpus(config: ModelConfig, gpu_memory: int, reserve: int = DEFAULT_RESERVE, limit: int = 64) -> int | None:
    """The smallest GPU count (that the model splits over) whose plan fits, or None up to `limit`."""
    for gpus in range(1, limit + 1):
        if plan_gpus(config, gpus, gpu_memory, reserve).fits:
            return gpus
    return None


def describe(config: ModelConfig, plan: GpuPlan) -> tuple[list[tuple[str, str]], str]:
    """Rows of the plan for a table, and one plain verdict line."""
    from dsagent.model.sizing import human_bytes

    g = plan.gpus
    rows = [("GPUs", f"{g} x {human_bytes(plan.gpu_memory)}")]
    if plan.problem:
        return rows, f"cannot split this model over {g} GPUs: {plan.problem}"
    experts = f", {config.n_routed_experts // g} routed experts" if config.n_routed_experts else ""
    rows += [
        (
            "per GPU",
            f"{config.num_attention_heads // g} attention heads{experts}, {-(-config.vocab_size // g):,} vocab rows",
        ),
        ("weights per GPU", human_bytes(plan.weight_bytes)),
        ("KV cache per token per GPU", f"{plan.kv_bytes_per_token:,} B (the MLA latent cache is on every GPU)"),
        ("reserved per GPU", f"{human_bytes(plan.reserve)} (CUDA context, NCCL buffers, activations)"),
        ("left for the KV cache", human_bytes(max(0, plan.kv_budget))),
    ]
    if plan.fits:
        longest = plan.max_context
        note = (
            f" (the model's maximum is {config.max_position_embeddings:,})"
            if longest > config.max_position_embeddings
            else ""
        )
        rows.append(("longest context", f"{longest:,} tokens{note}"))
        return (
            rows,
            f"fits: {g} GPUs hold the weights and {min(longest, config.max_position_embeddings):,} tokens of context",
        )
    need = fewest_gpus(config, plan.gpu_memory, plan.reserve)
    hint = f"; the fewest GPUs of this size that fit: {need}" if need else ""
    rows.append(("longest context", "none"))
    short = human_bytes(plan.weight_bytes + plan.reserve + plan.kv_bytes_per_token)
    return rows, f"does not fit: each GPU needs {short} for its weights, reserve and one token of KV cache{hint}"
