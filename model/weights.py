"""Loading a Hugging Face DeepSeek-V3/V3.2 checkpoint: sharded safetensors, memory-mapped, layer by layer.

fp8 e4m3 weights stay fp8 with their 128x128 `weight_scale_inv` blocks; nothing is expanded to bf16.
Dtype rules of the reference: norm weights, the gate (weight and correction bias) and the indexer's
weights_proj are fp32; everything else that is not fp8 uses the engine's activation dtype.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import torch
from dsagent.kernels.fp8 import FP8
from dsagent.model.attention import MLA
from dsagent.model.config import ConfigError, ForwardOptions, ModelConfig
from dsagent.model.ffn import MLP, Gate, MoE
from dsagent.model.indexer import Indexer
from dsagent.model.layers import Linear
from dsagent.model.parallel import ParallelContext, parallelize
from dsagent.model.shard import ShardPlan, read_slice
from dsagent.model.transformer import Block, Transformer
from safetensors import safe_open

INDEX_FILE = "model.safetensors.index.json"


def shard_map(path: Path) -> dict[str, str]:
    """Tensor name -> shard file name, from the index file or the single model.safetensors."""
    index = path / INDEX_FILE
    if index.is_file():
        return json.loads(index.read_text())["weight_map"]
    single = path / "model.safetensors"
    if not single.is_file():
        raise ConfigError(f"{path}: no {INDEX_FILE} or model.safetensors; is this a checkpoint folder?")
    with safe_open(single, framework="pt") as f:
        return {name: single.name for name in f.keys()}


class LayerReader:
    """Reads the tensors of one layer from the memory-mapped shards that hold them (with a ShardPlan, only
    this rank's slice of each split tensor)."""

    def __init__(
        self,
        handles: dict[str, object],
        names: dict[str, str],
        dtype: torch.dtype,
        device,
        plan: ShardPlan | None = None,
    ):
        self._handles, self._names, self.dtype, self.device, self.plan = handles, names, dtype, device, plan

    def has(self, name: str) -> bool:
        return name in self._names

    def raw(self, name: str) -> torch.Tensor:
        if name not in self._names:
            raise ConfigError(f"checkpoint is missing tensor {name}")
        split = self.plan.split(name) if self.plan else None
        if split is not None:
            return read_slice(self._handles[self._names[name]], name, split)
        return self._handles[self._names[name]].get_tensor(name)

    def experts(self, count: int) -> range:
        """The routed experts this process holds."""
        return self.plan.experts if self.plan else range(count)

    def tensor(self, name: str, dtype: torch.dtype | None = None) -> torch.Tensor:
        return self.raw(name).to(device=self.device, dtype=dtype or self.dtype)

    def fp32(self, name: str) -> torch.Tensor:
        return self.tensor(name, torch.float32)

    def linear(self, prefix: str) -> Linear:
        weight = self.raw(f"{prefix}.weight")
        if weight.dtype == FP8:
            scale = self.raw(f"{prefix}.weight_scale_inv")
            return Linear(weight.to(self.device), scale.to(device=self.device, dtype=torch.float32))
        return Linear(weight.to(device=self.device, dtype=self.dtype))


@contextmanager
def open_shards(path: Path, files: set[str]) -> Iterator[dict[str, object]]:
    with ExitStack() as stack:
        yield {f: stack.enter_context(safe_open(path / f, framework="pt")) for f in sorted(files)}


def _attention(config: ModelConfig, r: LayerReader, p: str, options: ForwardOptions) -> MLA:
    indexer = None
    if config.has_indexer:
        i = f"{p}.indexer"
        indexer = Indexer(
            config,
            r.linear(f"{i}.wq_b"),
            r.linear(f"{i}.wk"),
            r.fp32(f"{i}.k_norm.weight"),
            r.fp32(f"{i}.k_norm.bias"),
            r.fp32(f"{i}.weights_proj.weight"),
            interleaved_rope=options.variant == "indexer_interleaved_rope",
        )
    lora = config.q_lora_rank is not None
    return MLA(
        config,
        q_a=r.linear(f"{p}.q_a_proj") if lora else None,
        q_a_norm=r.fp32(f"{p}.q_a_layernorm.weight") if lora else None,
        q_b=r.linear(f"{p}.q_b_proj" if lora else f"{p}.q_proj"),
        kv_a=r.linear(f"{p}.kv_a_proj_with_mqa"),
        kv_a_norm=r.fp32(f"{p}.kv_a_layernorm.weight"),
        kv_b=r.linear(f"{p}.kv_b_proj"),
        o=r.linear(f"{p}.o_proj"),
        indexer=indexer,
    )


def _mlp(r: LayerReader, p: str) -> MLP:
    return MLP(r.linear(f"{p}.gate_proj"), r.linear(f"{p}.up_proj"), r.linear(f"{p}.down_proj"))


def _stack_experts(config: ModelConfig, r: LayerReader, p: str):
    """Routed experts as w13 [E, 2I, D] (gate rows then up rows) and w2 [E, D, I], filled in place."""
    experts = r.experts(config.n_routed_experts)
    first = r.raw(f"{p}.experts.{experts[0]}.gate_proj.weight")
    fp8 = first.dtype == FP8
    n, inter, dim = len(experts), config.moe_intermediate_size, config.hidden_size
    dtype = FP8 if fp8 else r.dtype
    w13 = torch.empty(n, 2 * inter, dim, dtype=dtype, device=r.device)
    w2 = torch.empty(n, dim, inter, dtype=dtype, device=r.device)
    s13 = s2 = None
    if fp8:
        s13 = torch.empty(n, 2 * -(-inter // 128), -(-dim // 128), dtype=torch.float32, device=r.device)
        s2 = torch.empty(n, -(-dim // 128), -(-inter // 128), dtype=torch.float32, device=r.device)
    for i, e in enumerate(experts):  # stacked at i: this process's experts only
        x = f"{p}.experts.{e}"
        w13[i, :inter] = r.raw(f"{x}.gate_proj.weight")
        w13[i, inter:] = r.raw(f"{x}.up_proj.weight")
        w2[i] = r.raw(f"{x}.down_proj.weight")
        if fp8:
            gate_scale = r.raw(f"{x}.gate_proj.weight_scale_inv")
            s13[i, : gate_scale.shape[0]] = gate_scale
            s13[i, gate_scale.shape[0] :] = r.raw(f"{x}.up_proj.weight_scale_inv")
            s2[i] = r.raw(f"{x}.down_proj.weight_scale_inv")
    return w13, w2, s13, s2


def _moe(config: ModelConfig, r: LayerReader, p: str, options: ForwardOptions) -> MoE:
    bias_name = f"{p}.gate.e_score_correction_bias"
    bias = r.fp32(bias_name) if r.has(bias_name) and options.variant != "no_gate_bias" else None
    gate = Gate(config, r.fp32(f"{p}.gate.weight"), bias)
    shared = _mlp(r, f"{p}.shared_experts") if config.n_shared_experts else None
    return MoE(gate, *_stack_experts(config, r, p), shared)


def _block(config: ModelConfig, r: LayerReader, layer: int, options: ForwardOptions) -> Block:
    p = f"model.layers.{layer}"
    ffn = _moe(config, r, f"{p}.mlp", options) if config.is_moe_layer(layer) else _mlp(r, f"{p}.mlp")
    return Block(
        attn_norm=r.fp32(f"{p}.input_layernorm.weight"),
        attn=_attention(config, r, f"{p}.self_attn", options),
        ffn_norm=r.fp32(f"{p}.post_attention_layernorm.weight"),
        ffn=ffn,
    )


def load_transformer(
    config: ModelConfig,
    path: Path,
    device: torch.device | str,
    dtype: torch.dtype,
    options: ForwardOptions,
    progress: bool = True,
    parallel: ParallelContext | None = None,
) -> Transformer:
    """Build the model one layer at a time; only the shards of the current layer are mapped. With a
    `parallel` context of several ranks, only this rank's slices are read (see model/shard.py)."""
    plan = ShardPlan(config, parallel.rank, parallel.world) if parallel is not None and parallel.world > 1 else None
    names = shard_map(path)
    groups: dict[str, dict[str, str]] = defaultdict(dict)
    for name, shard in names.items():
        parts = name.split(".")
        key = parts[2] if name.startswith("model.layers.") else "top"
        groups[key][name] = shard

    def reader(key: str):
        group = groups.get(key, {})
        return group, open_shards(path, set(group.values()))

    if config.q_lora_rank is None and config.has_indexer:
        raise ConfigError("deepseek_v32 checkpoints need q_lora_rank")
    blocks: list[Block] = []
    with _progress(progress, config.num_hidden_layers + 1) as advance:
        group, shards = reader("top")
        with shards as handles:
            r = LayerReader(handles, group, dtype, device, plan)
            embed, norm = r.tensor("model.embed_tokens.weight"), r.fp32("model.norm.weight")
            head_name = "model.embed_tokens.weight" if config.tie_word_embeddings else "lm_head.weight"
            head = embed if config.tie_word_embeddings else r.tensor(head_name)
        advance()
        for layer in range(config.num_hidden_layers):
            group, shards = reader(str(layer))
            with shards as handles:
                blocks.append(_block(config, LayerReader(handles, group, dtype, device, plan), layer, options))
            advance()
    model = Transformer(config, embed, blocks, norm, head, options, device)
    return model if plan is None else parallelize(model, parallel, plan)


@contextmanager
def _progress(enabled: bool, total: int):
    if not enabled:
        yield lambda: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("loading layers"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task("load", total=total)
        yield lambda: bar.advance(task)
