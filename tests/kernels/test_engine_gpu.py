"""The engine on CUDA (every hot op through the Triton kernels) against the parity fixtures, with the
thresholds of shared/parity/README.md: teacher-forced per layer, then end to end through session.append."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from dsagent.kernels import indexer_triton
from dsagent.model.cache import KVCache
from dsagent.model.engine import Engine
from safetensors.torch import load_file

pytestmark = pytest.mark.gpu


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return F.cosine_similarity(a.flatten().float().cpu(), b.flatten().float().cpu(), dim=0).item()


def _agreement(mine: torch.Tensor, ref: torch.Tensor, causal: bool) -> float:
    agree = total = 0
    for t, (row, ref_row) in enumerate(zip(mine.tolist(), ref.tolist(), strict=True)):
        theirs = {p for p in ref_row if not causal or p <= t}
        agree += len(theirs & set(row))
        total += len(theirs)
    return agree / total


@pytest.mark.parametrize("radix", [False, True])
@pytest.mark.parametrize("name", ["v32-tiny-bf16", "v32-tiny-fp8"])
def test_engine_matches_reference_on_gpu(shared_dir: Path, name: str, radix: bool, monkeypatch) -> None:
    # radix: the tiny model's short rows go through the radix select as a 128K-key decode row would
    monkeypatch.setattr(indexer_triton, "RADIX_MIN_KEYS", 64 if radix else 1 << 30)
    folder = shared_dir / "parity" / name
    engine = Engine.from_pretrained(folder, device="cuda", progress=False)
    ref = {k: v.cuda() for k, v in load_file(folder / "reference.safetensors").items()}
    for case in ("case0", "case1"):
        tokens, length = ref[f"{case}.tokens"], int(ref[f"{case}.prefill_len"])
        hidden = engine.model.embed[tokens[:length]]
        for layer in range(engine.config.num_hidden_layers):
            trace: dict = {}
            cache = KVCache(engine.config, engine.model.dtype, "cuda")
            out = engine.model.block_forward(layer, hidden, cache, trace=trace)
            target = ref[f"{case}.prefill_hidden.layer{layer}"]
            assert _cos(out.float() - hidden.float(), target.float() - hidden.float()) >= 0.985, (case, layer)
            assert _agreement(trace["topk"], ref[f"{case}.prefill_topk.layer{layer}"], True) >= 0.95, (case, layer)
            if "experts" in trace:
                experts = ref[f"{case}.prefill_gate_experts.layer{layer}"]
                assert _agreement(trace["experts"], experts, False) >= 0.97, (case, layer)
            hidden = target
        session = engine.new_session()
        ids = tokens.tolist()
        cosines = [_cos(session.append(ids[:length]), ref[f"{case}.prefill_logits"])]
        cosines += [_cos(session.append([ids[length + i]]), ref[f"{case}.decode_logits"][i]) for i in range(8)]
        assert sum(cosines) / len(cosines) >= 0.975 and min(cosines) >= 0.95, (case, cosines)
