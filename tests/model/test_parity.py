"""Parity with the official DeepSeek-V3.2 reference on the tiny fixtures in shared/parity (see its README:
teacher-forced per layer, then end to end through session.append), and proof that wrong variants fail."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from dsagent.model.cache import KVCache
from dsagent.model.config import ForwardOptions
from dsagent.model.engine import Engine
from safetensors.torch import load_file

LAYER_COS, SELECTION, EXPERTS = 0.985, 0.95, 0.97
E2E_MEAN, E2E_MIN = 0.975, 0.95
CASES = ("case0", "case1")
pytestmark = pytest.mark.slow  # each check runs the fixture model on two prompts (a few seconds on 2 cores)


@dataclass
class Report:
    layer_cos: list[float]  # per case and layer
    selection: list[float]
    experts: list[float]
    e2e_mean: list[float]  # per case
    e2e_min: list[float]

    def failures(self) -> list[str]:
        out = [f"layer cos {c:.4f}" for c in self.layer_cos if c < LAYER_COS]
        out += [f"indexer agreement {a:.3f}" for a in self.selection if a < SELECTION]
        out += [f"expert agreement {a:.3f}" for a in self.experts if a < EXPERTS]
        out += [f"e2e mean {m:.4f}" for m in self.e2e_mean if m < E2E_MEAN]
        out += [f"e2e min {m:.4f}" for m in self.e2e_min if m < E2E_MIN]
        return out


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return F.cosine_similarity(a.flatten().float(), b.flatten().float(), dim=0).item()


def _agreement(mine: torch.Tensor, ref: torch.Tensor, visible: bool) -> float:
    """Share of the reference's choices that we also made; with visible=True only causal key positions count
    (the reference pads short rows with arbitrary masked positions)."""
    agree = total = 0
    for t, (row, ref_row) in enumerate(zip(mine.tolist(), ref.tolist(), strict=True)):
        theirs = {p for p in ref_row if not visible or p <= t}
        agree += len(theirs & set(row))
        total += len(theirs)
    return agree / total


def _teacher_forced(engine: Engine, ref: dict, case: str, report: Report) -> None:
    length = int(ref[f"{case}.prefill_len"])
    hidden = engine.model.embed[ref[f"{case}.tokens"][:length].to(engine.device)]
    for layer in range(engine.config.num_hidden_layers):
        trace: dict = {}
        cache = KVCache(engine.config, engine.model.dtype, engine.device)
        out = engine.model.block_forward(layer, hidden, cache, trace=trace)
        target = ref[f"{case}.prefill_hidden.layer{layer}"].to(engine.device)
        report.layer_cos.append(_cos(out.float() - hidden.float(), target.float() - hidden.float()))
        report.selection.append(_agreement(trace["topk"].cpu(), ref[f"{case}.prefill_topk.layer{layer}"], visible=True))
        if "experts" in trace:
            report.experts.append(
                _agreement(trace["experts"].cpu(), ref[f"{case}.prefill_gate_experts.layer{layer}"], False)
            )
        hidden = target


def _end_to_end(engine: Engine, ref: dict, case: str, report: Report) -> None:
    tokens = ref[f"{case}.tokens"].tolist()
    length = int(ref[f"{case}.prefill_len"])
    session = engine.new_session()
    cosines = [_cos(session.append(tokens[:length]), ref[f"{case}.prefill_logits"])]
    for i in range(8):
        cosines.append(_cos(session.append([tokens[length + i]]), ref[f"{case}.decode_logits"][i]))
    report.e2e_mean.append(sum(cosines) / len(cosines))
    report.e2e_min.append(min(cosines))


@cache
def _reference(folder: str) -> dict:
    return load_file(Path(folder) / "reference.safetensors")


def run_parity(folder: Path, options: ForwardOptions = ForwardOptions(), device: str = "cpu") -> Report:
    engine = Engine.from_pretrained(folder, device=device, options=options, progress=False)
    ref = _reference(str(folder))
    report = Report([], [], [], [], [])
    for case in CASES:
        _teacher_forced(engine, ref, case, report)
        _end_to_end(engine, ref, case, report)
    return report


@pytest.mark.parametrize("name", ["v32-tiny-bf16", "v32-tiny-fp8"])
def test_matches_reference(shared_dir: Path, name: str) -> None:
    report = run_parity(shared_dir / "parity" / name)
    assert len(report.layer_cos) == 6 and len(report.experts) == 4 and len(report.e2e_mean) == 2
    assert report.failures() == [], report


@pytest.mark.parametrize("name", ["v32-tiny-bf16", "v32-tiny-fp8"])
def test_absorbed_form_matches_reference(shared_dir: Path, name: str) -> None:
    """The decode form (kv_b_proj folded into query and output, sparse_mla) used for the prefill too."""
    report = run_parity(shared_dir / "parity" / name, ForwardOptions(attention="absorbed"))
    assert report.failures() == [], report


@pytest.mark.parametrize("variant", ["dense_attention", "indexer_interleaved_rope", "no_gate_bias"])
def test_wrong_variants_fail(shared_dir: Path, variant: str) -> None:
    report = run_parity(shared_dir / "parity" / "v32-tiny-bf16", ForwardOptions(variant=variant))
    failures = report.failures()
    # Each bug must already show in the per-layer, teacher-forced check that localises it.
    assert any(f.startswith("layer cos") for f in failures), (variant, report)
    if variant == "indexer_interleaved_rope":
        assert any(f.startswith("indexer agreement") for f in failures)
    if variant == "no_gate_bias":
        assert any(f.startswith("expert agreement") for f in failures)
