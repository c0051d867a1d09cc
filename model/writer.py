"""Writing randomly initialised checkpoints in the Hugging Face layout (`dsagent model init`).

config.json, sharded safetensors with model.safetensors.index.json, and the DeepSeek tokenizer files.
Tensors are generated shard by shard, so memory stays near one shard whatever the model size.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from pathlib import Path

import torch
from dsagent.kernels.fp8 import FP8, FP8_MAX
from dsagent.model.config import config_from_dict
from dsagent.model.presets import CONFIG_ONLY, TensorSpec, preset_config, tensor_specs
from dsagent.model.tokenizer import package_tokenizer_file
from dsagent.model.weights import INDEX_FILE
from safetensors.torch import save_file

SHARD_BYTES = 1 << 30


def quantize_weight(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """w [N, K] fp32 -> (e4m3 [N, K], weight_scale_inv [ceil(N/128), ceil(K/128)]) with amax/448 block scales."""
    n, k = w.shape
    padded = torch.nn.functional.pad(w, (0, -k % 128, 0, -n % 128))
    blocks = padded.view(padded.shape[0] // 128, 128, padded.shape[1] // 128, 128)
    scale = blocks.abs().amax(dim=(1, 3)).clamp_min(1e-12) / FP8_MAX  # [Nb, Kb]
    q = (blocks / scale[:, None, :, None]).clamp(-FP8_MAX, FP8_MAX).to(FP8)
    return q.view(padded.shape)[:n, :k].contiguous(), scale


def _stored_bytes(spec: TensorSpec, fp8: bool) -> int:
    n = math.prod(spec.shape)
    if spec.role == "linear" and fp8:
        return n + 4 * math.ceil(spec.shape[0] / 128) * math.ceil(spec.shape[1] / 128)
    return n * (4 if spec.role == "vector32" else 2)


def _random_tensors(spec: TensorSpec, fp8: bool, gen: torch.Generator) -> dict[str, torch.Tensor]:
    if spec.role == "norm":
        return {spec.name: torch.ones(spec.shape, dtype=torch.bfloat16)}
    if spec.role == "vector32":
        if spec.name.endswith("k_norm.weight"):
            return {spec.name: torch.ones(spec.shape)}
        return {spec.name: torch.randn(spec.shape, generator=gen) * 0.02}  # biases
    std = 1.0 if "embed_tokens" in spec.name else spec.shape[-1] ** -0.5
    w = torch.randn(spec.shape, generator=gen) * std
    if spec.role == "linear" and fp8:
        q, scale = quantize_weight(w)
        return {spec.name: q, spec.name.removesuffix("weight") + "weight_scale_inv": scale}
    return {spec.name: w.to(torch.bfloat16)}


def write_checkpoint(
    raw_config: dict,
    out: Path,
    seed: int = 0,
    shard_bytes: int = SHARD_BYTES,
    on_shard: Callable[[int, int], None] | None = None,
) -> list[Path]:
    """Write a random checkpoint for `raw_config` into `out`; returns the shard files."""
    config = config_from_dict(raw_config)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(raw_config, indent=2) + "\n")
    copy_tokenizer(out)
    specs = tensor_specs(config)
    shards: list[list[TensorSpec]] = [[]]
    size = 0
    for spec in specs:
        nbytes = _stored_bytes(spec, config.is_fp8)
        if shards[-1] and size + nbytes > shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(spec)
        size += nbytes
    gen = torch.Generator().manual_seed(seed)
    weight_map: dict[str, str] = {}
    files = []
    for i, group in enumerate(shards):
        name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        tensors: dict[str, torch.Tensor] = {}
        for spec in group:
            tensors.update(_random_tensors(spec, config.is_fp8, gen))
        save_file(tensors, out / name, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(tensors, name))
        files.append(out / name)
        if on_shard:
            on_shard(i + 1, len(shards))
    total = sum(f.stat().st_size for f in files)
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")
    return files


def copy_tokenizer(out: Path) -> None:
    source = package_tokenizer_file()
    shutil.copyfile(source, out / "tokenizer.json")
    if (source.parent / "tokenizer_config.json").is_file():
        shutil.copyfile(source.parent / "tokenizer_config.json", out / "tokenizer_config.json")


def init_checkpoint(
    preset: str, out: Path, fp8: bool = False, seed: int = 0, on_shard: Callable[[int, int], None] | None = None
) -> list[Path]:
    """`dsagent model init`: a preset's random checkpoint (config and tokenizer only for sizing presets)."""
    raw = preset_config(preset, fp8)
    if preset in CONFIG_ONLY:
        config_from_dict(raw)
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(raw, indent=2) + "\n")
        copy_tokenizer(out)
        return []
    return write_checkpoint(raw, out, seed, on_shard=on_shard)
