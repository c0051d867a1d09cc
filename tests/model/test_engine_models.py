"""Model families and checkpoint formats beyond the parity fixtures: DeepSeek-V3 (dense MLA, no indexer,
with and without q_lora), fp8 loading without full-precision copies, and sizes computed from configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from dsagent.kernels.fp8 import FP8
from dsagent.model.config import ForwardOptions
from dsagent.model.engine import Engine
from dsagent.model.sizing import size_model
from dsagent.model.writer import write_checkpoint

V3 = {
    "model_type": "deepseek_v3",
    "vocab_size": 512,
    "hidden_size": 128,
    "intermediate_size": 256,
    "moe_intermediate_size": 128,
    "num_hidden_layers": 2,
    "first_k_dense_replace": 1,
    "num_attention_heads": 2,
    "n_routed_experts": 8,
    "n_shared_experts": 1,
    "num_experts_per_tok": 2,
    "n_group": 2,
    "topk_group": 1,
    "routed_scaling_factor": 2.5,
    "q_lora_rank": 64,
    "kv_lora_rank": 64,
    "qk_nope_head_dim": 32,
    "qk_rope_head_dim": 16,
    "v_head_dim": 32,
    "rope_scaling": {
        "type": "yarn",
        "factor": 40,
        "original_max_position_embeddings": 4096,
        "mscale": 1.0,
        "mscale_all_dim": 1.0,
    },
}
FP8_CONFIG = {"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [128, 128]}


def ids(n: int) -> list[int]:
    return torch.randint(3, 512, (n,), generator=torch.Generator().manual_seed(n)).tolist()


@pytest.fixture(scope="module", params=["v3", "v3-no-q-lora", "v3-fp8"])
def v3_checkpoint(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    raw = dict(V3)
    if request.param == "v3-no-q-lora":
        raw["q_lora_rank"] = None
    if request.param == "v3-fp8":
        raw["quantization_config"] = FP8_CONFIG
    out = tmp_path_factory.mktemp(request.param)
    write_checkpoint(raw, out, seed=3, shard_bytes=400_000)  # several shards
    return out


@pytest.mark.slow
def test_deepseek_v3_runs_with_sessions(v3_checkpoint: Path) -> None:
    engine = Engine.from_pretrained(v3_checkpoint, progress=False)
    assert not engine.config.has_indexer
    assert len(list(v3_checkpoint.glob("model-*.safetensors"))) > 1
    prompt = ids(20)
    whole = engine.new_session().append(prompt)
    assert whole.shape == (512,) and whole.dtype == torch.float32 and torch.isfinite(whole).all()
    # Within one attention form, token-by-token decoding reproduces the prefill.
    absorbed = Engine.from_pretrained(v3_checkpoint, options=ForwardOptions(attention="absorbed"), progress=False)
    at_once = absorbed.new_session().append(prompt)
    single = absorbed.new_session()
    for t in prompt:
        last = single.append([t])
    assert F.cosine_similarity(last, at_once, dim=0) > 0.99999
    # The expanded prefill form and the absorbed form compute the same attention (up to rounding).
    assert F.cosine_similarity(at_once, whole, dim=0) > 0.99
    assert engine.weight_bytes() == size_model(engine.config).weight_bytes


def test_fp8_checkpoint_stays_fp8_in_memory(shared_dir: Path) -> None:
    folder = shared_dir / "parity" / "v32-tiny-fp8"
    engine = Engine.from_pretrained(folder, progress=False)
    moe = engine.model.blocks[1].ffn
    assert moe.w13.dtype == FP8 and moe.w13.shape == (16, 256, 256) and moe.w13_scale.shape == (16, 2, 2)
    assert engine.model.blocks[0].attn.kv_b.weight.dtype == FP8
    assert engine.model.blocks[0].attn.indexer.weights_proj.dtype == torch.float32
    assert moe.gate.bias.dtype == torch.float32 and engine.model.blocks[0].attn_norm.dtype == torch.float32
    on_disk = (folder / "model.safetensors").stat().st_size
    assert engine.weight_bytes() < 1.05 * on_disk
    assert engine.weight_bytes() == size_model(engine.config).weight_bytes
