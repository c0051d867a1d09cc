"""One-token appends replayed from CUDA graphs give the eager engine's logits: over many steps, across a
cache reallocation (the graph is captured again), after truncate (rows past the position are stale and
must not be read), on forks (their own buffers) and after sync."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from dsagent.kernels import indexer_triton
from dsagent.model import attention, ffn
from dsagent.model.cache import CHUNK
from dsagent.model.engine import Engine, Session

pytestmark = pytest.mark.gpu


def _tokens(n: int, seed: int) -> list[int]:
    return torch.randint(3, 1024, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def _same(graph: Session, eager: Session, tokens: list[int]) -> None:
    for t in tokens:
        a, b = graph.append([t]), eager.append([t])
        assert F.cosine_similarity(a, b, dim=0).item() >= 0.9999, (len(eager), t)
    assert len(graph) == len(eager) and graph.cache.length == eager.cache.length == len(eager)


@pytest.mark.parametrize("radix", [False, True])
@pytest.mark.parametrize("name", ["v32-tiny-bf16", "v32-tiny-fp8"])
def test_graph_decode_matches_eager(shared_dir: Path, name: str, radix: bool, monkeypatch) -> None:
    # radix: the tiny model's short rows go through the radix select as a 128K-key decode row would
    monkeypatch.setattr(indexer_triton, "RADIX_MIN_KEYS", 64 if radix else 1 << 30)
    graphs = Engine.from_pretrained(shared_dir / "parity" / name, device="cuda", progress=False)
    assert graphs.cuda_graphs  # the default on CUDA
    eager = Engine(graphs.config, graphs.model, graphs.tokenizer, graphs.path)  # same weights, no graphs
    g, e = graphs.new_session(), eager.new_session()
    prompt = _tokens(CHUNK - 5, seed=0)
    assert F.cosine_similarity(g.append(prompt), e.append(prompt), dim=0).item() >= 0.9999
    assert g.cache.capacity == CHUNK

    steps = _tokens(12, seed=1)
    _same(g, e, steps[:4])
    first = g._graph
    assert first is not None and first.replays == 3  # captured on the first step, replayed since
    _same(g, e, steps[4:])  # crosses the chunk boundary: the cache is reallocated and the step recaptured
    assert g.cache.capacity > CHUNK and g._graph is not first and g._graph.replays >= 1 and not g._graph.failed

    # truncate: the same graph, at earlier positions; the rows after them hold other tokens now
    second = g._graph
    g.truncate(CHUNK - 40)
    e.truncate(CHUNK - 40)
    _same(g, e, _tokens(6, seed=2))
    assert g._graph is second

    # forks have their own buffers and graphs; the original's graph is untouched by theirs
    gf, ef = g.fork(), e.fork()
    _same(gf, ef, _tokens(5, seed=3))
    assert gf._graph is not None and gf._graph is not second
    _same(g, e, _tokens(3, seed=4))
    assert g._graph is second

    # sync rewrites part of the history eagerly; decoding after it reads the new rows
    history = g.tokens[: CHUNK - 60] + _tokens(7, seed=5)
    assert g.sync(history) == e.sync(history)
    assert F.cosine_similarity(g.last_logits, e.last_logits, dim=0).item() >= 0.9999
    _same(g, e, _tokens(4, seed=6))


def test_sessions_capture_after_every_earlier_one_is_gone(shared_dir: Path) -> None:
    # the engine's graphs share one memory pool, which must outlive each session's graphs
    engine = Engine.from_pretrained(shared_dir / "parity" / "v32-tiny-bf16", device="cuda", progress=False)
    for seed in range(3):
        session = engine.new_session()
        session.append(_tokens(20, seed=seed))
        session.append([5])
        session.append([6])
        assert session._graph is not None and not session._graph.failed and session._graph.replays == 1, seed
        del session
        gc.collect()


def _replayed(engine: Engine, prompt: int, steps: int, seed: int) -> torch.Tensor:
    """[steps, V] logits of one-token appends after a prompt, all but the first replayed from the step's graph."""
    session = engine.new_session()
    session.append(_tokens(prompt, seed=seed))
    logits = torch.stack([session.append([t]) for t in _tokens(steps, seed=seed + 1)])
    assert session._graph is not None and not session._graph.failed and session._graph.replays == steps - 1
    return logits


def test_shared_expert_on_a_side_stream_changes_no_bit(shared_dir: Path, monkeypatch) -> None:
    # captured decode steps run the shared expert on a side stream beside the routed experts; the same kernels
    # on the same inputs, so the replayed logits must be identical to running it after them
    engine = Engine.from_pretrained(shared_dir / "parity" / "v32-tiny-fp8", device="cuda", progress=False)
    assert engine.config.n_shared_experts and ffn.OVERLAP_ROWS > 0
    logits = []
    for rows in (0, ffn.OVERLAP_ROWS):  # after the routed experts, then beside them
        monkeypatch.setattr(ffn, "OVERLAP_ROWS", rows)
        logits.append(_replayed(engine, 40, 6, seed=8))
    assert torch.equal(*logits)


def test_graphs_switch(shared_dir: Path) -> None:
    folder = shared_dir / "parity" / "v32-tiny-bf16"
    off = Engine.from_pretrained(folder, device="cuda", progress=False, cuda_graphs=False)
    session = off.new_session()
    session.append(_tokens(10, seed=7))
    session.append([5])
    assert session._graph is None
    assert not Engine.from_pretrained(folder, progress=False).cuda_graphs  # CPU engines decode eagerly


def test_a_step_that_cannot_be_captured_runs_eagerly(shared_dir: Path, monkeypatch, caplog) -> None:
    """A decode step that reads a value back to the host cannot be captured: the first step still returns its
    logits (from the real run before capture), the engine turns graphs off, the capture stream is no longer
    current, the process can still draw random numbers on the GPU, and every later step matches an eager
    engine."""
    graphs = Engine.from_pretrained(shared_dir / "parity" / "v32-tiny-bf16", device="cuda", progress=False)
    eager = Engine(graphs.config, graphs.model, graphs.tokenizer, graphs.path)
    step_at = graphs.model.step_at

    def syncing_step(ids, positions, cache):
        assert positions.sum().item() >= 0  # a host read: fine eagerly, forbidden while a graph is captured
        return step_at(ids, positions, cache)

    monkeypatch.setattr(graphs.model, "step_at", syncing_step)
    g, e = graphs.new_session(), eager.new_session()
    prompt = _tokens(40, seed=8)
    g.append(prompt)
    e.append(prompt)
    stream = torch.cuda.current_stream()
    _same(g, e, _tokens(1, seed=9))
    assert "not captured in a CUDA graph" in caplog.text
    assert not graphs.cuda_graphs and g._graph is None
    assert torch.cuda.current_stream() == stream
    assert torch.rand(1000, device="cuda").std().item() > 0.2  # raises while a generator is left capturing
    _same(g, e, _tokens(5, seed=10))
    assert g._graph is None


def test_decode_is_the_same_on_every_run(shared_dir: Path, monkeypatch) -> None:
    # rows of ~2000 keys go through the radix select in slices held by several programs; the positions it picks
    # must come out in one order whichever program finishes first, or attention sums them in another order
    monkeypatch.setattr(indexer_triton, "RADIX_MIN_KEYS", 64)
    engine = Engine.from_pretrained(shared_dir / "parity" / "v32-tiny-fp8", device="cuda", progress=False)
    runs = [_replayed(engine, 2000, 8, seed=10) for _ in range(3)]
    assert all(torch.equal(runs[0], other) for other in runs[1:])


def test_indexer_on_a_side_stream_gives_the_same_logits(shared_dir: Path, monkeypatch) -> None:
    # captured decode steps run the indexer (its wq_b, scores, radix top-k) on a side stream beside q_b, the
    # cache row and the absorbed query; q_b then runs alone instead of stacked with wq_b, a GEMM of another width
    # whose columns are still summed in the same order, so no bit may change
    monkeypatch.setattr(indexer_triton, "RADIX_MIN_KEYS", 64)
    engine = Engine.from_pretrained(shared_dir / "parity" / "v32-tiny-fp8", device="cuda", progress=False)
    assert engine.model.blocks[0].attn.indexer is not None and attention.OVERLAP_ROWS > 0
    logits = []
    for rows in (0, attention.OVERLAP_ROWS):
        monkeypatch.setattr(attention, "OVERLAP_ROWS", rows)
        logits.append(_replayed(engine, 300, 6, seed=12))
    assert torch.equal(*logits), (logits[0] - logits[1]).abs().max().item()
