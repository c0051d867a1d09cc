"""Model presets for `dsagent model init` and sizing, and the list of tensors a config implies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dsagent.model.config import ModelConfig

_YARN = {
    "type": "yarn",
    "factor": 40,
    "original_max_position_embeddings": 4096,
    "beta_fast": 32,
    "beta_slow": 1,
    "mscale": 1.0,
    "mscale_all_dim": 1.0,
}

_COMMON: dict[str, Any] = {
    "architectures": ["DeepseekV32ForCausalLM"],
    "model_type": "deepseek_v32",
    "vocab_size": 129280,
    "n_shared_experts": 1,
    "routed_scaling_factor": 2.5,
    "scoring_func": "sigmoid",
    "topk_method": "noaux_tc",
    "norm_topk_prob": True,
    "hidden_act": "silu",
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "rope_scaling": _YARN,
    "max_position_embeddings": 163840,
    "num_nextn_predict_layers": 0,
    "bos_token_id": 0,
    "eos_token_id": 1,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
}

_FULL: dict[str, Any] = {
    "hidden_size": 7168,
    "intermediate_size": 18432,
    "moe_intermediate_size": 2048,
    "num_attention_heads": 128,
    "num_key_value_heads": 128,
    "n_routed_experts": 256,
    "num_experts_per_tok": 8,
    "n_group": 8,
    "topk_group": 4,
    "q_lora_rank": 1536,
    "kv_lora_rank": 512,
    "qk_nope_head_dim": 128,
    "qk_rope_head_dim": 64,
    "v_head_dim": 128,
    "index_n_heads": 64,
    "index_head_dim": 128,
    "index_topk": 2048,
}

PRESETS: dict[str, dict[str, Any]] = {
    # The parity fixture's shapes with the full tokenizer vocabulary, so text and chat markers work.
    "tiny": _COMMON
    | {
        "hidden_size": 256,
        "intermediate_size": 512,
        "moe_intermediate_size": 128,
        "num_hidden_layers": 3,
        "first_k_dense_replace": 1,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "n_routed_experts": 16,
        "num_experts_per_tok": 4,
        "n_group": 4,
        "topk_group": 2,
        "q_lora_rank": 256,
        "kv_lora_rank": 128,
        "qk_nope_head_dim": 64,
        "qk_rope_head_dim": 64,
        "v_head_dim": 64,
        "index_n_heads": 8,
        "index_head_dim": 128,
        "index_topk": 32,
    },
    "small": _COMMON
    | {
        "hidden_size": 1024,
        "intermediate_size": 2816,
        "moe_intermediate_size": 256,
        "num_hidden_layers": 4,
        "first_k_dense_replace": 1,
        "num_attention_heads": 8,
        "num_key_value_heads": 8,
        "n_routed_experts": 32,
        "num_experts_per_tok": 4,
        "n_group": 4,
        "topk_group": 2,
        "q_lora_rank": 384,
        "kv_lora_rank": 256,
        "qk_nope_head_dim": 64,
        "qk_rope_head_dim": 64,
        "v_head_dim": 64,
        "index_n_heads": 8,
        "index_head_dim": 128,
        "index_topk": 128,
    },
    # One full-size DeepSeek-V3.2 MoE layer: for kernel and memory benchmarks.
    "v32-layer": _COMMON | _FULL | {"num_hidden_layers": 1, "first_k_dense_replace": 0},
    "v32-671b": _COMMON | _FULL | {"num_hidden_layers": 61, "first_k_dense_replace": 3},
}
CONFIG_ONLY = {"v32-671b"}

FP8_QUANTIZATION = {
    "quant_method": "fp8",
    "fmt": "e4m3",
    "activation_scheme": "dynamic",
    "scale_fmt": "ue8m0",
    "weight_block_size": [128, 128],
}


def preset_config(name: str, fp8: bool = False) -> dict[str, Any]:
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    raw = dict(PRESETS[name])
    if fp8:
        raw["quantization_config"] = dict(FP8_QUANTIZATION)
    return raw


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    role: str  # linear (fp8 in fp8 checkpoints) | norm | vector32 (fp32 on disk) | matrix (bf16, not fp8)
    routed: bool = False  # a routed expert's weight (active only when chosen)


def tensor_specs(c: ModelConfig) -> list[TensorSpec]:
    """Every tensor of the checkpoint, in the Hugging Face layout (fp8 scales not listed)."""
    specs = [TensorSpec("model.embed_tokens.weight", (c.vocab_size, c.hidden_size), "matrix")]
    for layer in range(c.num_hidden_layers):
        specs += _layer_specs(c, f"model.layers.{layer}", c.is_moe_layer(layer))
    specs.append(TensorSpec("model.norm.weight", (c.hidden_size,), "norm"))
    if not c.tie_word_embeddings:
        specs.append(TensorSpec("lm_head.weight", (c.vocab_size, c.hidden_size), "matrix"))
    return specs


def _mlp_specs(p: str, dim: int, inter: int, routed: bool = False) -> list[TensorSpec]:
    return [
        TensorSpec(f"{p}.gate_proj.weight", (inter, dim), "linear", routed),
        TensorSpec(f"{p}.up_proj.weight", (inter, dim), "linear", routed),
        TensorSpec(f"{p}.down_proj.weight", (dim, inter), "linear", routed),
    ]


def _layer_specs(c: ModelConfig, p: str, moe: bool) -> list[TensorSpec]:
    d, h, a = c.hidden_size, c.num_attention_heads, f"{p}.self_attn"
    specs = [TensorSpec(f"{p}.input_layernorm.weight", (d,), "norm")]
    if c.q_lora_rank is None:
        specs.append(TensorSpec(f"{a}.q_proj.weight", (h * c.qk_head_dim, d), "linear"))
    else:
        specs += [
            TensorSpec(f"{a}.q_a_proj.weight", (c.q_lora_rank, d), "linear"),
            TensorSpec(f"{a}.q_a_layernorm.weight", (c.q_lora_rank,), "norm"),
            TensorSpec(f"{a}.q_b_proj.weight", (h * c.qk_head_dim, c.q_lora_rank), "linear"),
        ]
    specs += [
        TensorSpec(f"{a}.kv_a_proj_with_mqa.weight", (c.kv_lora_rank + c.qk_rope_head_dim, d), "linear"),
        TensorSpec(f"{a}.kv_a_layernorm.weight", (c.kv_lora_rank,), "norm"),
        TensorSpec(f"{a}.kv_b_proj.weight", (h * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank), "linear"),
        TensorSpec(f"{a}.o_proj.weight", (d, h * c.v_head_dim), "linear"),
    ]
    if c.has_indexer:
        i = f"{a}.indexer"
        specs += [
            TensorSpec(f"{i}.wq_b.weight", (c.index_n_heads * c.index_head_dim, c.q_lora_rank), "linear"),
            TensorSpec(f"{i}.wk.weight", (c.index_head_dim, d), "linear"),
            TensorSpec(f"{i}.k_norm.weight", (c.index_head_dim,), "vector32"),
            TensorSpec(f"{i}.k_norm.bias", (c.index_head_dim,), "vector32"),
            TensorSpec(f"{i}.weights_proj.weight", (c.index_n_heads, d), "matrix"),
        ]
    specs.append(TensorSpec(f"{p}.post_attention_layernorm.weight", (d,), "norm"))
    if not moe:
        return specs + _mlp_specs(f"{p}.mlp", d, c.intermediate_size)
    m = f"{p}.mlp"
    specs.append(TensorSpec(f"{m}.gate.weight", (c.n_routed_experts, d), "matrix"))
    if c.topk_method == "noaux_tc":
        specs.append(TensorSpec(f"{m}.gate.e_score_correction_bias", (c.n_routed_experts,), "vector32"))
    for e in range(c.n_routed_experts):
        specs += _mlp_specs(f"{m}.experts.{e}", d, c.moe_intermediate_size, routed=True)
    if c.n_shared_experts:
        specs += _mlp_specs(f"{m}.shared_experts", d, c.n_shared_experts * c.moe_intermediate_size)
    return specs
