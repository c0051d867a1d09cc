"""Sizes computed from a config alone: parameters, active parameters per token, weight and KV-cache bytes."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from dsagent.model.config import ModelConfig
from dsagent.model.presets import TensorSpec, tensor_specs

_FP32_ON_LOAD = re.compile(r"(layernorm|norm|gate|weights_proj)\.(weight|bias)$|e_score_correction_bias$")


@dataclass(frozen=True)
class Sizing:
    params: int
    active_params: int  # per token: everything but the routed experts a token does not use
    disk_bytes: int  # the checkpoint's tensors as stored (fp8 + scales, or bf16)
    weight_bytes: int  # the weights as the engine holds them (norms, gate, weights_proj in fp32)
    kv_latent_bytes: int  # per token, all layers: normalised latent + RoPE key
    kv_index_bytes: int  # per token, all layers: indexer key (fp8) + its scale

    @property
    def kv_bytes_per_token(self) -> int:
        return self.kv_latent_bytes + self.kv_index_bytes


def loaded_bytes(spec: TensorSpec, config: ModelConfig, act_bytes: int = 2) -> int:
    """A tensor's bytes as the engine holds it: fp8 linears with their 128x128 block scales, norms, the router
    gate and the indexer's weights_proj in fp32, the rest in the activation dtype."""
    n = math.prod(spec.shape)
    if spec.role == "linear" and config.is_fp8:
        return n + 4 * math.ceil(spec.shape[0] / 128) * math.ceil(spec.shape[1] / 128)
    return n * (4 if _FP32_ON_LOAD.search(spec.name) else act_bytes)


def size_model(config: ModelConfig, act_bytes: int = 2) -> Sizing:
    params = active = disk = loaded = 0
    k, experts = config.num_experts_per_tok or 0, config.n_routed_experts or 1
    for spec in tensor_specs(config):
        n = math.prod(spec.shape)
        params += n
        active += n * k // experts if spec.routed else n
        loaded += loaded_bytes(spec, config, act_bytes)
        fp8 = spec.role == "linear" and config.is_fp8
        disk += loaded_bytes(spec, config) if fp8 else n * (4 if spec.role == "vector32" else 2)
    layers = config.num_hidden_layers
    latent = layers * (config.kv_lora_rank + config.qk_rope_head_dim) * act_bytes
    index = layers * (config.index_head_dim + 4) if config.has_indexer else 0
    return Sizing(params, active, disk, loaded, latent, index)


def max_context(config: ModelConfig, memory_bytes: int, act_bytes: int = 2) -> int:
    """Longest context whose KV cache fits in memory beside the weights (0 if the weights do not fit)."""
    sizing = size_model(config, act_bytes)
    free = memory_bytes - sizing.weight_bytes
    return max(0, free // sizing.kv_bytes_per_token)


_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "kib": 2**10,
    "m": 10**6,
    "mb": 10**6,
    "mib": 2**20,
    "g": 10**9,
    "gb": 10**9,
    "gib": 2**30,
    "t": 10**12,
    "tb": 10**12,
    "tib": 2**40,
}


def parse_bytes(text: str) -> int:
    """'80GB', '80 GiB', '512MiB', '1e9' -> bytes."""
    match = re.fullmatch(r"\s*([0-9.eE+]+)\s*([a-zA-Z]*)\s*", text)
    if not match or match.group(2).lower() not in _UNITS:
        raise ValueError(f"cannot read {text!r} as a size; write e.g. 80GB, 24GiB or 512MiB")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} TiB"


def human_count(n: float) -> str:
    for unit in ("", "K", "M", "B"):
        if abs(n) < 1000 or unit == "B":
            return f"{n:.0f}" if unit == "" else f"{n:.2f}{unit}"
        n /= 1000
    return f"{n:.2f}B"
