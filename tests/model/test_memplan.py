"""The per-GPU memory plan of `dsagent model info --gpus N --gpu-memory SIZE`, for DeepSeek-V3.2 (671B, fp8)
on H200s (141 GB each)."""

from __future__ import annotations

from pathlib import Path

from dsagent.cli import app
from dsagent.model.config import config_from_dict
from dsagent.model.memplan import DEFAULT_RESERVE, fewest_gpus, plan_gpus
from dsagent.model.presets import preset_config
from dsagent.model.sizing import parse_bytes, size_model
from typer.testing import CliRunner

H200 = parse_bytes("141GB")
GIB = 2**30
V32 = config_from_dict(preset_config("v32-671b", fp8=True))


def test_one_gpu_plan_is_the_whole_model() -> None:
    sizing = size_model(V32)
    plan = plan_gpus(V32, 1, H200)
    assert plan.weight_bytes == sizing.weight_bytes and plan.kv_bytes_per_token == sizing.kv_bytes_per_token
    assert not plan.fits and plan.max_context == 0


def test_v32_671b_fits_8_h200_and_not_4() -> None:
    total = size_model(V32).weight_bytes
    eight, four = plan_gpus(V32, 8, H200), plan_gpus(V32, 4, H200)
    # an eighth of the model plus what every GPU repeats (indexer, low-rank projections, norms, router: < 3 GiB)
    assert total / 8 < eight.weight_bytes < total / 8 + 3 * GIB
    assert round(eight.weight_bytes / GIB, 2) == 80.36
    # the MLA cache is whole on every GPU: 61 layers x (512 latent + 64 RoPE key) bf16 + 128 indexer fp8 + scale
    assert eight.kv_bytes_per_token == 61 * ((512 + 64) * 2 + 128 + 4) == 78_324
    assert eight.fits and eight.max_context == (H200 - DEFAULT_RESERVE - eight.weight_bytes) // 78_324
    assert eight.max_context > V32.max_position_embeddings  # the full 160K context with room to spare
    assert not four.fits and four.weight_bytes > H200 and four.max_context == 0
    assert fewest_gpus(V32, H200) == 8
    odd = plan_gpus(V32, 3, H200).problem
    assert odd == "128 attention heads do not divide by 3; 256 routed experts do not divide by 3"


def test_model_info_prints_the_plan(tmp_path: Path) -> None:
    runner = CliRunner()
    folder = tmp_path / "v32"
    assert runner.invoke(app, ["model", "init", "v32-671b", str(folder), "--fp8"]).exit_code == 0
    fits = runner.invoke(app, ["model", "info", str(folder), "--gpus", "8", "--gpu-memory", "141GB"])
    text = " ".join(fits.output.split())
    assert fits.exit_code == 0, fits.output
    assert "weights per GPU │ 80.36 GiB" in text and "16 attention heads, 32 routed experts" in text
    assert "KV cache per token per GPU │ 78,324 B" in text and "longest context │ 643,663 tokens" in text
    assert "fits: 8 GPUs hold the weights and 163,840 tokens of context" in text
    short = runner.invoke(app, ["model", "info", str(folder), "--gpus", "4", "--gpu-memory", "141GB"])
    text = " ".join(short.output.split())
    assert "weights per GPU │ 158.60 GiB" in text
    assert "does not fit: each GPU needs 162.60 GiB" in text and "the fewest GPUs of this size that fit: 8" in text
    odd = runner.invoke(app, ["model", "info", str(folder), "--gpus", "3", "--gpu-memory", "141GB"])
    assert "cannot split this model over 3 GPUs" in " ".join(odd.output.split())
    bad = runner.invoke(app, ["model", "info", str(folder), "--gpus", "8", "--gpu-memory", "lots"])
    assert bad.exit_code == 2 and "cannot read 'lots' as a size" in bad.output
