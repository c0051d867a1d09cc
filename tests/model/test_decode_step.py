"""Transformer.step_at, the decode step a CUDA graph captures (positions as a tensor, attention over the whole
allocated cache with rows past the position masked), gives the logits of the ordinary forward. Run here on
the CPU; tests/kernels/test_engine_graphs_gpu.py replays it from graphs on CUDA."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from dsagent.model.cache import CHUNK, KVCache
from dsagent.model.config import ForwardOptions
from dsagent.model.engine import Engine


def _tokens(n: int, seed: int) -> list[int]:
    return torch.randint(3, 1024, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def _step(engine: Engine, cache: KVCache, token: int) -> torch.Tensor:
    start = cache.length
    cache.ensure(start + 1)
    logits = engine.model.step_at(torch.tensor([token]), torch.tensor([start]), cache)
    cache.length = start + 1
    return logits


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["reference", "dense_attention"])
def test_step_at_matches_forward(shared_dir: Path, variant: str) -> None:
    options = ForwardOptions(variant=variant)
    engine = Engine.from_pretrained(shared_dir / "parity" / "v32-tiny-bf16", options=options, progress=False)
    assert not engine.cuda_graphs  # a CPU engine decodes eagerly
    session = engine.new_session()
    session.append(_tokens(CHUNK - 4, seed=0))
    cache = session.cache.fork()  # sized to its tokens: reallocated at its first step

    def same(tokens: list[int]) -> None:
        for t in tokens:
            a, b = session.append([t]), _step(engine, cache, t)
            assert F.cosine_similarity(a, b, dim=0).item() >= 0.99999, (len(session), t)
            assert cache.length == session.cache.length

    same(_tokens(8, seed=1))  # crosses CHUNK in the session's cache
    assert session.cache.capacity > CHUNK
    # after truncate the rows past the position hold other tokens: they must stay invisible
    session.truncate(CHUNK - 30)
    cache.truncate(CHUNK - 30)
    same(_tokens(5, seed=2))
