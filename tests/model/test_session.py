"""Sessions keep a KV cache across calls: incremental appends, truncate, fork and sync must all agree with
processing the same tokens from scratch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from dsagent.model.cache import CHUNK
from dsagent.model.config import ForwardOptions
from dsagent.model.engine import Engine
from dsagent.model.sizing import size_model


@pytest.fixture(scope="module")
def engine(shared_dir: Path) -> Engine:
    return Engine.from_pretrained(shared_dir / "parity" / "v32-tiny-bf16", progress=False)


def tokens(n: int, seed: int = 0) -> list[int]:
    return torch.randint(3, 1024, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def close(a: torch.Tensor, b: torch.Tensor, cos: float = 0.9995) -> bool:
    return F.cosine_similarity(a, b, dim=0).item() >= cos


@pytest.mark.slow
def test_one_at_a_time_equals_all_at_once(engine: Engine) -> None:
    ids = tokens(38)  # index_topk is 32: the last 6 queries attend sparsely
    whole = engine.new_session()
    at_once = whole.append(ids)
    single = engine.new_session()
    for i, t in enumerate(ids):
        logits = single.append([t])
        if i == 33:
            assert close(logits, engine.new_session().append(ids[:34]))
    assert close(logits, at_once)
    assert len(single) == len(whole) == 38
    # In one attention form (no switch between the prefill and decode forms) they agree to rounding.
    absorbed = Engine.from_pretrained(engine.path, options=ForwardOptions(attention="absorbed"), progress=False)
    one_by_one = absorbed.new_session()
    for t in ids:
        last = one_by_one.append([t])
    assert close(last, absorbed.new_session().append(ids), 0.99999)
    # The cached rows agree too (up to one fp8 step of the latent's round trip).
    diff = (single.cache.layers[0].kv[:38].float() - whole.cache.layers[0].kv[:38].float()).abs().max()
    assert diff <= 0.07


def test_truncate_and_reappend_reproduces_logits(engine: Engine) -> None:
    ids = tokens(40, seed=1)
    session = engine.new_session()
    session.append(ids[:30])
    first = session.append(ids[30:])
    session.truncate(30)
    assert len(session) == 30 and session.cache.length == 30
    assert torch.equal(session.append(ids[30:]), first)
    session.truncate(25)
    other = session.append(tokens(5, seed=9))
    assert not torch.equal(other, first)


def test_fork_continues_identically_and_independently(engine: Engine) -> None:
    prompt, more = tokens(36, seed=2), tokens(4, seed=3)
    session = engine.new_session()
    session.append(prompt)
    fork = session.fork()
    assert torch.equal(fork.append(more), session.append(more))
    fork.append(tokens(3, seed=4))
    assert len(fork) == 43 and len(session) == 40
    fresh = engine.new_session()
    assert close(session.append([7]), fresh.append(prompt + more + [7]))


def test_sync_processes_only_tokens_after_the_common_prefix(engine: Engine) -> None:
    ids = tokens(30, seed=5)
    session = engine.new_session()
    assert session.sync(ids) == 30
    assert session.sync(ids) == 0  # nothing new: nothing processed
    extended = ids + tokens(4, seed=6)
    assert session.sync(extended) == 4
    diverged = ids[:20] + tokens(6, seed=7)
    assert session.sync(diverged) == 6 and session.tokens == diverged
    assert session.sync(diverged[:15]) == 1  # a pure prefix recomputes its last token for the logits
    assert len(session) == 15
    assert close(session.last_logits, engine.new_session().append(diverged[:15]))
    assert session.sync([]) == 0 and len(session) == 0 and session.cache.length == 0


def test_cache_grows_in_chunks_and_reports_its_bytes(engine: Engine) -> None:
    session = engine.new_session()
    assert session.cache.capacity == 0 and session.cache_bytes() == 0
    session.append(tokens(10))
    assert session.cache.capacity == CHUNK
    assert session.cache_bytes() == 10 * size_model(engine.config).kv_bytes_per_token
    session.append(tokens(CHUNK, seed=8))
    assert session.cache.capacity == 2 * CHUNK
    assert session.cache_bytes() == (10 + CHUNK) * size_model(engine.config).kv_bytes_per_token


@pytest.mark.slow
def test_absorbed_form_equals_expanded_form(shared_dir: Path) -> None:
    folder = shared_dir / "parity" / "v32-tiny-fp8"
    ids = tokens(48, seed=10)
    results = {}
    for form in ("expanded", "absorbed"):
        engine = Engine.from_pretrained(folder, options=ForwardOptions(attention=form), progress=False)
        session = engine.new_session()
        results[form] = [session.append(ids[:40]), session.append(ids[40:])]  # prefill, then a chunk
    for a, b in zip(results["expanded"], results["absorbed"], strict=True):
        assert close(a, b, 0.999)


def test_dsa_equals_dense_up_to_index_topk(shared_dir: Path, engine: Engine) -> None:
    dense = Engine.from_pretrained(
        shared_dir / "parity" / "v32-tiny-bf16", options=ForwardOptions(variant="dense_attention"), progress=False
    )
    topk = engine.config.index_topk
    ids = tokens(topk + 8, seed=11)
    assert torch.equal(engine.new_session().append(ids[:topk]), dense.new_session().append(ids[:topk]))
    # Beyond index_topk the selection matters, so the two differ.
    assert not torch.equal(engine.new_session().append(ids), dense.new_session().append(ids))


def test_append_rejects_ids_outside_the_vocabulary(engine: Engine) -> None:
    with pytest.raises(ValueError, match="token ids"):
        engine.new_session().append([5, engine.config.vocab_size])
