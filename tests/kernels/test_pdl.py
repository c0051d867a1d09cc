"""Programmatic dependent launch: a chain of kernels in a CUDA graph, each reading what the one before it wrote
(the indexer a key row quantised into the cache just before), gives exactly what plain launches give, replay
after replay with new inputs."""

from __future__ import annotations

import pytest
import torch
from dsagent.kernels import pdl
from dsagent.kernels.fp8_triton import act_quant_triton, fp8_linear_triton
from dsagent.kernels.gemv_triton import gemv_fp32_triton
from dsagent.kernels.indexer_triton import index_scores_triton
from dsagent.kernels.norm_triton import rms_norm_triton
from dsagent.kernels.topk_triton import topk_triton
from kernel_kit import indexer_inputs


def test_pdl_only_on_cuda(monkeypatch):
    assert pdl.pdl_args(torch.device("cpu")) == {"PDL": False}
    monkeypatch.setattr(pdl, "ENABLED", False)
    assert not pdl.pdl_on(torch.device("cuda"))


@pytest.mark.gpu
def test_pdl_is_on_for_hopper_gpu():
    assert pdl.pdl_on(torch.device("cuda")) == (torch.cuda.get_device_capability()[0] >= 9)


def _chain(st: dict) -> dict:
    """norm -> fp8 GEMM -> norm -> GEMV; a new key row quantised into the cache -> indexer scores -> top-k."""
    h = rms_norm_triton(st["x"], st["norm"], 1e-6)
    y = fp8_linear_triton(h, st["w8"], st["ws"])
    z = rms_norm_triton(y, st["norm2"], 1e-6)
    logits = gemv_fp32_triton(z, st["head"])
    pos = st["keys"].shape[0] - 1
    act_quant_triton(st["new_key"], out=(st["keys"][pos:], st["kscale"].view(-1, 1)[pos:]))
    scores = index_scores_triton(st["q"], st["w"], st["keys"], st["kscale"], pos)
    return {"logits": logits, "scores": scores, "top": topk_triton(scores, 512)}


def _state(seed: int) -> dict:
    torch.manual_seed(seed)
    n, k, s = 2112, 7168, 65536
    q, w, keys, kscale = indexer_inputs(1, 64, 128, s, "cuda")
    return {
        "x": torch.randn(1, k, device="cuda", dtype=torch.bfloat16),
        "norm": torch.rand(k, device="cuda") + 0.5,
        "w8": torch.randn(n, k, device="cuda").to(torch.float8_e4m3fn),
        "ws": torch.rand(n // 128 + 1, k // 128, device="cuda") / 64,
        "norm2": torch.rand(n, device="cuda") + 0.5,
        "head": torch.randn(4096, n, device="cuda", dtype=torch.bfloat16),
        "new_key": torch.randn(1, 128, device="cuda"),
        "q": q, "w": w, "keys": keys, "kscale": kscale,
    }  # fmt: skip


@pytest.mark.gpu
def test_chain_in_a_graph_matches_plain_launches(monkeypatch):
    graph_state, plain_state = _state(0), _state(0)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        _chain(graph_state)  # compiles the PDL variants
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outs = _chain(graph_state)
    monkeypatch.setattr(pdl, "ENABLED", False)
    for i in range(4):
        x, key = torch.randn_like(graph_state["x"]), torch.randn_like(graph_state["new_key"]) * (i + 1)
        for st in (graph_state, plain_state):
            st["x"].copy_(x)
            st["new_key"].copy_(key)
        graph.replay()
        want = _chain(plain_state)
        torch.cuda.synchronize()
        assert torch.equal(outs["logits"], want["logits"]), i
        assert torch.equal(outs["scores"], want["scores"]), i  # the newest key's score included
        assert torch.equal(outs["top"].sort(dim=-1).values, want["top"].sort(dim=-1).values), i
