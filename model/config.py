"""Model configuration: the Hugging Face `config.json` of DeepSeek-V3.2 (`deepseek_v32`) and DeepSeek-V3
(`deepseek_v3`, the same MLA + MoE without the sparse-attention indexer), validated."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator


class ConfigError(ValueError):
    """A checkpoint's config.json is missing, unreadable or describes a model the engine cannot run."""


class ModelConfig(BaseModel):
    """The fields of a DeepSeek-V3/V3.2 config.json that the engine uses (others are ignored)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    model_type: Literal["deepseek_v32", "deepseek_v3"]
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    moe_intermediate_size: int
    num_hidden_layers: int
    first_k_dense_replace: int = 0
    num_attention_heads: int
    n_routed_experts: int | None = None
    n_shared_experts: int = 0
    num_experts_per_tok: int | None = None
    n_group: int = 1
    topk_group: int = 1
    routed_scaling_factor: float = 1.0
    scoring_func: Literal["sigmoid", "softmax"] = "sigmoid"
    topk_method: Literal["noaux_tc", "greedy", "group_limited_greedy"] = "noaux_tc"
    norm_topk_prob: bool = True
    q_lora_rank: int | None = None
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int
    index_n_heads: int | None = None
    index_head_dim: int | None = None
    index_topk: int | None = None
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_scaling: dict[str, Any] | None = None
    max_position_embeddings: int = 163840
    bos_token_id: int = 0
    eos_token_id: int | list[int] = 1
    tie_word_embeddings: bool = False
    torch_dtype: str = "bfloat16"
    quantization_config: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        problems = list(_problems(self))
        if problems:
            raise ValueError("; ".join(problems))
        return self

    # -- derived quantities ------------------------------------------------------------------
    @property
    def has_indexer(self) -> bool:
        return self.index_topk is not None

    @property
    def qk_head_dim(self) -> int:
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    @property
    def is_fp8(self) -> bool:
        return bool(self.quantization_config) and self.quantization_config.get("quant_method") == "fp8"

    @property
    def num_moe_layers(self) -> int:
        return 0 if not self.n_routed_experts else self.num_hidden_layers - self.first_k_dense_replace

    def is_moe_layer(self, layer: int) -> bool:
        return bool(self.n_routed_experts) and layer >= self.first_k_dense_replace

    @property
    def eos_ids(self) -> list[int]:
        return [self.eos_token_id] if isinstance(self.eos_token_id, int) else list(self.eos_token_id)

    @property
    def rope_factor(self) -> float:
        return float((self.rope_scaling or {}).get("factor", 1.0))

    @property
    def softmax_scale(self) -> float:
        """qk_head_dim^-0.5, times mscale^2 under YaRN (mscale = 0.1 * mscale_all_dim * ln(factor) + 1)."""
        scale = self.qk_head_dim**-0.5
        mscale_all_dim = (self.rope_scaling or {}).get("mscale_all_dim", 0)
        if mscale_all_dim and self.rope_factor > 1:
            mscale = 0.1 * mscale_all_dim * math.log(self.rope_factor) + 1.0
            scale *= mscale * mscale
        return scale


def _problems(c: ModelConfig):
    if c.qk_rope_head_dim % 2:
        yield f"qk_rope_head_dim must be even, got {c.qk_rope_head_dim}"
    if c.first_k_dense_replace > c.num_hidden_layers:
        yield "first_k_dense_replace exceeds num_hidden_layers"
    if c.model_type == "deepseek_v32":
        if None in (c.index_n_heads, c.index_head_dim, c.index_topk):
            yield "deepseek_v32 needs index_n_heads, index_head_dim and index_topk"
        elif not (c.qk_rope_head_dim <= c.index_head_dim <= 128) or c.index_head_dim & (c.index_head_dim - 1):
            yield "index_head_dim must be a power of two between qk_rope_head_dim and 128"
        if c.q_lora_rank is None:
            yield "deepseek_v32 needs q_lora_rank (the indexer reads the compressed query)"
    elif c.index_topk is not None:
        yield "index_* fields belong to model_type deepseek_v32"
    if c.n_routed_experts:
        if not c.num_experts_per_tok or c.num_experts_per_tok > c.n_routed_experts:
            yield "num_experts_per_tok must be between 1 and n_routed_experts"
        if c.n_routed_experts % c.n_group or not 1 <= c.topk_group <= c.n_group:
            yield "n_routed_experts must divide into n_group groups and 1 <= topk_group <= n_group"
        elif c.topk_method == "noaux_tc" and c.n_routed_experts // c.n_group < 2:
            yield "noaux_tc routing scores groups by their top-2 experts: need >= 2 experts per group"
        elif c.num_experts_per_tok and c.num_experts_per_tok > c.topk_group * (c.n_routed_experts // c.n_group):
            yield "num_experts_per_tok exceeds the experts in topk_group groups"
    q = c.quantization_config
    if q:
        if q.get("quant_method") != "fp8" or q.get("fmt", "e4m3") != "e4m3":
            yield f"unsupported quantization_config {q.get('quant_method')!r}/{q.get('fmt')!r}: fp8 e4m3 only"
        if list(q.get("weight_block_size", [128, 128])) != [128, 128]:
            yield "fp8 weights need weight_block_size [128, 128]"
        if c.n_routed_experts and c.moe_intermediate_size % 128:
            yield "fp8 experts need moe_intermediate_size divisible by 128 (stacked gate/up scale blocks)"


def load_config(path: str | Path) -> ModelConfig:
    """Read and validate `config.json` in a checkpoint folder (or the file itself)."""
    path = Path(path).expanduser()
    config_file = path / "config.json" if path.is_dir() else path
    if not config_file.is_file():
        raise ConfigError(f"{config_file}: no config.json; point at a Hugging Face checkpoint folder")
    try:
        raw = json.loads(config_file.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{config_file}: unreadable ({exc}); fix or replace config.json") from None
    return config_from_dict(raw, source=str(config_file))


def config_from_dict(raw: dict[str, Any], source: str = "config") -> ModelConfig:
    try:
        return ModelConfig.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "config"
        raise ConfigError(f"{source}: {where}: {first['msg']}") from None


Variant = Literal["reference", "dense_attention", "indexer_interleaved_rope", "no_gate_bias"]


@dataclass(frozen=True)
class ForwardOptions:
    """How the engine runs the forward pass (not part of the checkpoint).

    attention: "expanded" is the prefill form (latents up-projected by kv_b_proj, multi-head attention),
    "absorbed" folds kv_b_proj into the query and output and attends over the cached latents (the decode
    form, sparse_mla); "auto" uses the expanded form on CPU for multi-token appends and absorbed otherwise.
    variant: deliberately wrong forwards kept for tests that prove the parity checks catch real bugs.
    """

    attention: Literal["auto", "expanded", "absorbed"] = "auto"
    variant: Variant = "reference"
