"""The engine split over 2 ranks (gloo on CPU): the same logits and greedy continuation as one process, the
parity thresholds of shared/parity with 2 ranks, the rank-0-drives session protocol, and shard slicing."""

from __future__ import annotations

import gc
import multiprocessing
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from dsagent.kernels.moe import fused_moe
from dsagent.model.cache import KVCache
from dsagent.model.config import ConfigError, ForwardOptions, load_config
from dsagent.model.dist_engine import DistEngine
from dsagent.model.engine import Engine
from dsagent.model.ffn import MoE
from dsagent.model.launcher import launch, run_ranks
from dsagent.model.parallel import ParallelContext, ParallelMoE
from dsagent.model.shard import ShardPlan, read_slice
from dsagent.model.weights import load_transformer
from safetensors import safe_open
from safetensors.torch import load_file, save_file

# shared/parity/README.md: per layer (teacher-forced) and end to end, against the official reference
LAYER_COS, SELECTION, EXPERTS, E2E_MEAN, E2E_MIN = 0.985, 0.95, 0.97, 0.975, 0.95
SAME = 0.999  # 2 ranks against 1 rank


def cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return F.cosine_similarity(a.flatten().float(), b.flatten().float(), dim=0).item()


def prompt(n: int, seed: int = 0) -> list[int]:
    return torch.randint(3, 1024, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


# -- shard slicing (no processes) -------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["v32-tiny-bf16", "v32-tiny-fp8"])
def test_rank_slices_tile_every_split_tensor(shared_dir: Path, name: str) -> None:
    folder = shared_dir / "parity" / name
    config = load_config(folder)
    plans = [ShardPlan(config, rank, 2) for rank in range(2)]
    split = set()
    with safe_open(folder / "model.safetensors", framework="pt") as f:
        for tensor in f.keys():
            parts = [plan.split(tensor) for plan in plans]
            if parts[0] is None:
                assert parts[1] is None, tensor
                continue
            split.add(tensor)
            joined = torch.cat([read_slice(f, tensor, part) for part in parts], dim=parts[0].dim)
            assert torch.equal(joined.view(torch.uint8), f.get_tensor(tensor).view(torch.uint8)), tensor
    layer = "model.layers.1"
    expected = {"model.embed_tokens.weight", "lm_head.weight", "model.layers.0.mlp.down_proj.weight"}
    expected |= {f"{layer}.self_attn.{p}.weight" for p in ("q_b_proj", "kv_b_proj", "o_proj")}
    assert expected <= split
    assert f"{layer}.self_attn.q_a_proj.weight" not in split and f"{layer}.self_attn.indexer.wq_b.weight" not in split
    # the shared expert (intermediate 128) splits in bf16; in fp8 a 64-column half would be quantised
    # differently from one GPU, so it stays whole
    assert (f"{layer}.mlp.shared_experts.down_proj.weight" in split) == (name == "v32-tiny-bf16")
    if name == "v32-tiny-fp8":
        assert "model.layers.1.self_attn.o_proj.weight_scale_inv" in split
    assert [list(p.experts) for p in plans] == [list(range(8)), list(range(8, 16))]


def test_expert_partition_covers_every_pair(shared_dir: Path) -> None:
    """The routed experts of 2 ranks add up to the one-process MoE, whether a rank gathers its own (token,
    slot) pairs (prefill) or keeps all pairs with weight 0 on the others' (decode on a GPU, no host sync)."""
    folder = shared_dir / "parity" / "v32-tiny-bf16"
    config = load_config(folder)
    whole = load_transformer(config, folder, "cpu", torch.bfloat16, ForwardOptions(), False).blocks[1].ffn
    x = torch.randn(6, config.hidden_size, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    weights, ids = whole.gate(x)
    expected = fused_moe(x, ids, weights, whole.w13, whole.w2).float()
    for pad in (False, True):
        parts = []
        for rank in range(2):
            first = ShardPlan(config, rank, 2).experts.start
            part = MoE(whole.gate, whole.w13[first : first + 8], whole.w2[first : first + 8], None, None, None)
            parts.append(ParallelMoE(part, ParallelContext(rank, 2), first, False)._local(x, ids, weights, pad))
        assert cos(parts[0] + parts[1], expected) > 0.9999 and parts[0].abs().sum() > 0 and parts[1].abs().sum() > 0


def test_models_that_cannot_split_are_refused(shared_dir: Path) -> None:
    folder = shared_dir / "parity" / "v32-tiny-bf16"
    with pytest.raises(ConfigError, match="4 attention heads do not divide by 3"):
        ShardPlan(load_config(folder), 0, 3)
    with pytest.raises(ConfigError, match="16 routed experts do not divide by 3"):
        launch(folder, 3, device="cpu")  # refused before any process starts
    assert multiprocessing.active_children() == []


# -- rank 0 drives, rank 1 follows ----------------------------------------------------------------------
@pytest.mark.slow
class TestDriver:
    """One process runs one multi-GPU engine at a time: the pair lives for this class only."""

    @pytest.fixture(scope="class")
    def pair(self, shared_dir: Path):
        """(one-process engine, 2-rank engine started through the local backend's settings), both in fp32 (the
        CPU default), where rounding differences stay far below the random model's top-2 logit margins."""
        from dsagent.agent.local import load_engine
        from dsagent.config import Settings

        folder = shared_dir / "parity" / "v32-tiny-bf16"
        settings = Settings(model={"backend": "local", "path": str(folder), "device": "cpu", "gpus": 2})
        two = load_engine(settings)
        one = Engine.from_pretrained(folder, dtype=torch.float32, progress=False)
        yield one, two
        two.close()

    def test_same_logits_and_greedy_continuation(self, pair) -> None:
        one, two = pair
        assert isinstance(two, DistEngine) and two.gpus == 2 and two.model.dtype == torch.float32
        ids = prompt(30)
        a, b = one.new_session(), two.new_session()
        assert cos(a.append(ids), b.append(ids)) >= SAME
        assert list(a.generate(32)) == list(b.generate(32))
        assert cos(a.last_logits, b.last_logits) >= SAME
        assert a.cache_bytes() == b.cache_bytes()  # each rank keeps the whole latent cache

    def test_sessions_fork_truncate_and_sync(self, pair) -> None:
        one, two = pair
        ids, other = prompt(40, seed=1), prompt(12, seed=2)
        base = two.new_session()
        base.append(ids[:20])
        fork = base.fork()
        assert cos(fork.append(ids[20:30]), one.new_session().append(ids[:30])) >= SAME
        assert base.sync(ids[:12] + other) == len(other)  # the fork's tokens did not reach the base session
        assert cos(base.last_logits, one.new_session().append(ids[:12] + other)) >= SAME
        base.truncate(5)
        assert cos(base.append(ids[5:40]), one.new_session().append(ids)) >= SAME
        # a dropped session is freed on every rank with the next command
        del fork
        gc.collect()
        assert len(two.channel._freed) == 1
        base.append([7])
        assert len(two.channel._freed) == 0
        with pytest.raises(TypeError, match="new_session"):
            two.model.forward(torch.tensor([1]), KVCache(two.config, two.model.dtype, two.device))
        with pytest.raises(ConfigError, match="already runs a multi-GPU engine"):
            launch(two.path, 2, device="cpu")


@pytest.mark.slow
def test_fp8_checkpoint_over_two_ranks_and_clean_shutdown(shared_dir: Path) -> None:
    folder = shared_dir / "parity" / "v32-tiny-fp8"
    ref = load_file(folder / "reference.safetensors")
    length = int(ref["case1.prefill_len"])
    engine = launch(folder, 2, device="cpu")
    session = engine.new_session()
    assert cos(session.append(ref["case1.tokens"][:length].tolist()), ref["case1.prefill_logits"]) >= E2E_MIN
    followers = engine.followers
    engine.close()
    assert [p.is_alive() for p in followers] == [False] and [p.exitcode for p in followers] == [0]


@pytest.mark.slow  # starts processes
def test_a_rank_that_cannot_load_stops_the_launch(shared_dir: Path, tmp_path: Path) -> None:
    source = shared_dir / "parity" / "v32-tiny-bf16"
    for name in ("config.json", "tokenizer.json"):
        if (source / name).exists():
            shutil.copy(source / name, tmp_path / name)
    tensors = load_file(source / "model.safetensors")
    del tensors["model.layers.2.mlp.experts.12.up_proj.weight"]  # held by rank 1 only
    save_file(tensors, tmp_path / "model.safetensors")
    with pytest.raises(ConfigError, match="rank 1: checkpoint is missing tensor model.layers.2.mlp.experts.12"):
        launch(tmp_path, 2, device="cpu")
    assert multiprocessing.active_children() == []


# -- every rank runs the model (teacher-forced, and parity with the reference) ----------------------------
def _load(parallel: ParallelContext, device: torch.device, folder: str):
    path = Path(folder)
    return load_transformer(load_config(path), path, device, torch.bfloat16, ForwardOptions(), False, parallel)


def _block_outputs(model, ids: torch.Tensor, inputs: list) -> list:
    """Per layer: (input, the block's contribution, top-k keys, experts), all on the CPU. Layer L reads
    inputs[L], or the previous layer's output where that is None. The same calls on every rank."""
    out = []
    with torch.inference_mode():
        hidden = model.embed_tokens(ids)
        for layer in range(len(model.blocks)):
            if inputs[layer] is not None:
                hidden = inputs[layer].to(model.device)
            trace: dict = {}
            after = model.block_forward(layer, hidden, KVCache(model.config, model.dtype, model.device), trace=trace)
            experts = trace.get("experts")
            contribution = (after.float() - hidden.float()).cpu()
            out.append((hidden.cpu(), contribution, trace["topk"].cpu(), None if experts is None else experts.cpu()))
            hidden = after
    return out


def _blocks(parallel: ParallelContext, device: torch.device, folder: str, ids: torch.Tensor, inputs: list) -> list:
    return _block_outputs(_load(parallel, device, folder), ids, inputs)


def _parity_outputs(parallel: ParallelContext, device: torch.device, folder: str) -> dict:
    """For both reference cases: per layer teacher-forced on the reference's hidden states, and the logits
    of the prefill and of 8 decode steps."""
    ref = load_file(Path(folder) / "reference.safetensors")
    model = _load(parallel, device, folder)
    out: dict = {}
    with torch.inference_mode():
        for case in ("case0", "case1"):
            length, tokens = int(ref[f"{case}.prefill_len"]), ref[f"{case}.tokens"]
            inputs = [None] + [ref[f"{case}.prefill_hidden.layer{i}"] for i in range(len(model.blocks) - 1)]
            out[case, "blocks"] = _block_outputs(model, tokens[:length], inputs)
            cache = KVCache(model.config, model.dtype, model.device)
            logits = [model.forward(tokens[:length], cache)]
            logits += [model.forward(tokens[length + i : length + i + 1], cache) for i in range(8)]
            out[case] = torch.stack(logits).cpu()
    return out


def _agreement(mine: torch.Tensor, theirs: torch.Tensor, causal: bool) -> float:
    agree = total = 0
    for t, (row, other) in enumerate(zip(mine.tolist(), theirs.tolist(), strict=True)):
        wanted = {p for p in other if not causal or 0 <= p <= t}
        agree, total = agree + len(wanted & set(row)), total + len(wanted)
    return agree / total


def _routed_alike(topk, one_topk, experts, one_experts) -> torch.Tensor:
    """Rows (tokens) for which both runs picked the same set of keys and the same set of experts."""
    alike = [set(a) == set(b) for a, b in zip(topk.tolist(), one_topk.tolist(), strict=True)]
    if experts is not None:
        pairs = zip(alike, experts.tolist(), one_experts.tolist(), strict=True)
        alike = [same and set(a) == set(b) for same, a, b in pairs]
    return torch.tensor(alike)


def _same_blocks(two: list, other_rank: list, one: list) -> None:
    """2 ranks against 1 on the same inputs, layer by layer; the replicated parts identical on every rank.

    A router or indexer score that nearly ties can fall the other way when 2 ranks round their partial sums
    differently; that token then takes other experts and its output differs by far more than rounding (the
    `small` model on CPU: one token of 64 at cos 0.9, the layer at 0.998). Such tokens are counted and left
    out of the cosine, which holds the rest to rounding."""
    for layer, ((_, delta, topk, experts), (_, _, topk1, experts1), (_, one_delta, one_topk, one_experts)) in enumerate(
        zip(two, other_rank, one, strict=True)
    ):
        assert torch.equal(topk, topk1) and (experts is None or torch.equal(experts, experts1)), layer
        alike = _routed_alike(topk, one_topk, experts, one_experts)
        assert alike.float().mean() >= 0.95, (layer, alike.logical_not().nonzero().flatten().tolist())
        assert cos(delta[alike], one_delta[alike]) >= SAME, layer
        assert _agreement(topk, one_topk, True) >= 0.99, layer
        assert experts is None or _agreement(experts, one_experts, False) >= 0.99, layer


def _needs(device: str) -> None:
    have = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device == "cuda" and have < 2:
        pytest.skip(f"needs 2 CUDA GPUs, this machine has {have}: run `pytest -m multigpu` on one with two")


DEVICES = [pytest.param("cpu", marks=pytest.mark.slow), pytest.param("cuda", marks=pytest.mark.multigpu)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["v32-tiny-bf16", "v32-tiny-fp8"])
def test_parity_with_two_ranks(shared_dir: Path, name: str, device: str) -> None:
    _needs(device)
    folder = shared_dir / "parity" / name
    ref = load_file(folder / "reference.safetensors")
    rank0, rank1 = run_ranks(_parity_outputs, 2, device, str(folder))
    single = _parity_outputs(ParallelContext(), torch.device(device), str(folder))
    for case in ("case0", "case1"):
        _same_blocks(rank0[case, "blocks"], rank1[case, "blocks"], single[case, "blocks"])
        for layer, (start, delta, topk, experts) in enumerate(rank0[case, "blocks"]):
            target = ref[f"{case}.prefill_hidden.layer{layer}"].float()
            assert cos(delta, target - start.float()) >= LAYER_COS, (case, layer)
            assert _agreement(topk, ref[f"{case}.prefill_topk.layer{layer}"], True) >= SELECTION
            if experts is not None:
                assert _agreement(experts, ref[f"{case}.prefill_gate_experts.layer{layer}"], False) >= EXPERTS
        expected = torch.cat([ref[f"{case}.prefill_logits"][None], ref[f"{case}.decode_logits"]])
        cosines = [cos(mine, theirs) for mine, theirs in zip(rank0[case], expected, strict=True)]
        assert sum(cosines) / len(cosines) >= E2E_MEAN and min(cosines) >= E2E_MIN, (case, cosines)
        assert torch.equal(rank0[case], rank1[case])  # every rank ends with the same logits
        # End to end, a random network with fp8 rounding or sparse top-k choices is chaotic: one process moves
        # as far between its two attention forms. There the per-layer comparison above is the 1-rank check.
        if name == "v32-tiny-bf16" and case == "case0":
            assert min(cos(a, b) for a, b in zip(rank0[case], single[case], strict=True)) >= SAME


# -- the `small` preset on 2 GPUs -------------------------------------------------------------------------
@pytest.mark.multigpu
def test_small_model_on_two_gpus_matches_one_gpu(tmp_path: Path) -> None:
    """Per layer in bf16 (teacher-forced on the 1-GPU states); end to end in fp32, where 2 GPUs and 1 round
    alike: in bf16 this random model's router ties make any two roundings diverge (the engine's own two
    attention forms reach only cos 0.974 on one device)."""
    _needs("cuda")
    from dsagent.model.writer import init_checkpoint

    folder = tmp_path / "small"
    init_checkpoint("small", folder)
    ids = torch.tensor([0] + prompt(63, seed=3))
    one_blocks = _blocks(ParallelContext(), torch.device("cuda"), str(folder), ids, [None] * 4)
    inputs = [hidden for hidden, *_ in one_blocks]
    rank0, rank1 = run_ranks(_blocks, 2, "cuda", str(folder), ids, inputs)
    _same_blocks(rank0, rank1, one_blocks)

    one = Engine.from_pretrained(folder, device="cuda", dtype=torch.float32, progress=False, cuda_graphs=False)
    a = one.new_session()
    first, greedy = a.append(ids.tolist()), list(a.generate(64))
    a_more = list(a.generate(4))  # the 4 tokens after those 64
    del one, a
    torch.cuda.empty_cache()
    two = launch(folder, 2, device="cuda", dtype=torch.float32, cuda_graphs=True)  # graphs on both ranks
    try:
        b = two.new_session()
        assert cos(first, b.append(ids.tolist())) >= SAME
        assert list(b.generate(64)) == greedy
        assert b._graph is not None and b._graph.replays >= 60, "2-rank decode did not replay its CUDA graphs"
        c = b.fork()  # a fork decodes through its own graphs; truncating the first keeps its graph
        b.truncate(len(ids))
        assert list(b.generate(8)) == greedy[:8] and list(c.generate(4)) == list(a_more)
    finally:
        two.close()
