"""bench/dsa_bytes.py: the bytes of a V3.2 layer's decode step with dense attention and with DSA."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from dsagent.model.config import config_from_dict
from dsagent.model.presets import preset_config

sys.path.insert(0, str(Path(__file__).parents[2] / "bench"))
import dsa_bytes  # noqa: E402

V32 = config_from_dict(preset_config("v32-layer", fp8=True))
SIZES = dsa_bytes.StepSizes.of(V32)
L = 131072


def test_attention_bytes_are_v32s_cache_rows():
    _, dense, dsa = SIZES.step(L, 1)
    assert dense == L * (512 + 64) * 2  # bf16 latent + RoPE key
    assert dsa == L * (128 + 4) + 2048 * (512 + 64) * 2  # fp8 index keys with scales + the top-k rows


def test_weights_read_grow_from_k_experts_to_all():
    shared, expert = dsa_bytes.layer_bytes(V32)
    assert 40e6 < expert < 50e6  # three 7168x2048 fp8 matrices and their scales
    assert SIZES.step(L, 1)[0] == pytest.approx(shared + 8 * expert)
    assert SIZES.step(L, 100_000)[0] == pytest.approx(shared + 256 * expert)


def test_ratio_rises_with_batch_towards_the_attentions_own():
    ratios = [SIZES.ratio(L, b) for b in dsa_bytes.BATCHES]
    assert ratios == sorted(ratios) and 1.1 < ratios[0] < 1.3
    _, dense, dsa = SIZES.step(L, 1)
    assert ratios[-1] < dense / dsa == pytest.approx(7.68, abs=0.01)


def test_report_names_where_the_target_is_reached():
    text = dsa_bytes.report(L, 6.0)
    reach = int(text.split("6x at ")[1].split()[0])
    assert SIZES.ratio(L, reach) >= 6 > SIZES.ratio(L, reach - 1)
    assert text.count("\n| ") == 1 + len(dsa_bytes.BATCHES)
