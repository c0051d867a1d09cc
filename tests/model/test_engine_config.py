"""Config loading and validation, presets, and sizes computed from a config alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dsagent.doctor import _check_local_checkpoint
from dsagent.model.config import ConfigError, config_from_dict, load_config
from dsagent.model.presets import PRESETS, preset_config
from dsagent.model.sizing import max_context, parse_bytes, size_model


def test_parity_configs_load(shared_dir: Path) -> None:
    bf16 = load_config(shared_dir / "parity" / "v32-tiny-bf16")
    fp8 = load_config(shared_dir / "parity" / "v32-tiny-fp8" / "config.json")
    assert bf16.has_indexer and bf16.index_topk == 32 and not bf16.is_fp8 and fp8.is_fp8
    assert fp8.is_moe_layer(1) and not fp8.is_moe_layer(0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"index_topk": None}, "index_n_heads, index_head_dim and index_topk"),
        ({"q_lora_rank": None}, "needs q_lora_rank"),
        ({"index_head_dim": 96}, "power of two"),
        ({"n_group": 3}, "n_group groups"),
        ({"num_experts_per_tok": 40}, "num_experts_per_tok"),
        ({"model_type": "llama"}, "model_type"),
        ({"quantization_config": {"quant_method": "awq"}}, "fp8 e4m3 only"),
        ({"hidden_size": "wide"}, "hidden_size"),
    ],
)
def test_invalid_configs_are_rejected_with_one_line(change: dict, message: str) -> None:
    raw = preset_config("tiny") | change
    with pytest.raises(ConfigError, match=message) as info:
        config_from_dict(raw)
    assert "\n" not in str(info.value)


def test_deepseek_v3_needs_no_indexer() -> None:
    raw = {k: v for k, v in preset_config("tiny").items() if not k.startswith("index_")}
    config = config_from_dict(raw | {"model_type": "deepseek_v3", "q_lora_rank": None})
    assert not config.has_indexer and config.q_lora_rank is None
    with pytest.raises(ConfigError, match="belong to model_type deepseek_v32"):
        config_from_dict(raw | {"model_type": "deepseek_v3", "index_topk": 8})


def test_load_config_errors_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no config.json"):
        load_config(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="unreadable"):
        load_config(tmp_path)


def test_doctor_reports_an_invalid_config(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(preset_config("tiny") | {"index_topk": None}))
    check = _check_local_checkpoint(tmp_path)
    assert not check.ok and "index_topk" in check.detail
    (tmp_path / "config.json").write_text(json.dumps(preset_config("tiny")))
    assert _check_local_checkpoint(tmp_path).ok


def test_presets_validate_and_the_full_model_has_its_published_size() -> None:
    configs = {name: config_from_dict(preset_config(name, fp8=True)) for name in PRESETS}
    full = size_model(configs["v32-671b"])
    assert 671e9 < full.params < 672e9  # 671B without the multi-token-prediction layer
    assert 37e9 < full.active_params < 39e9
    # Per token and layer: 512 latent + 64 RoPE values in bf16, a 128-byte fp8 indexer key + fp32 scale.
    assert full.kv_latent_bytes == 61 * 576 * 2 and full.kv_index_bytes == 61 * 132
    layer = configs["v32-layer"]
    assert (layer.hidden_size, layer.num_attention_heads, layer.n_routed_experts) == (7168, 128, 256)
    assert (layer.kv_lora_rank, layer.qk_rope_head_dim, layer.index_topk) == (512, 64, 2048)
    small = size_model(configs["small"])
    assert 200 * 2**20 < small.disk_bytes < 900 * 2**20


def test_max_context_and_byte_parsing() -> None:
    config = config_from_dict(preset_config("v32-671b", fp8=True))
    assert max_context(config, parse_bytes("100GB")) == 0  # the weights alone do not fit
    sizing = size_model(config)
    room = parse_bytes("800GiB") - sizing.weight_bytes
    assert max_context(config, parse_bytes("800GiB")) == room // sizing.kv_bytes_per_token
    assert parse_bytes("1.5 KiB") == 1536 and parse_bytes("2gb") == 2 * 10**9
    with pytest.raises(ValueError, match="80GB"):
        parse_bytes("lots")
