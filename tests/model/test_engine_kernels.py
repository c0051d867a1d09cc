"""The PyTorch references of the hot ops (what the engine dispatches to on CPU) against direct formulas."""

from __future__ import annotations

import pytest
import torch
from dsagent.kernels.fp8 import FP8, act_dequant, act_quant, fp8_gemm, fp8_linear, fp8_to_float, weight_dequant
from dsagent.kernels.indexer import index_scores, index_topk
from dsagent.kernels.moe import fused_moe
from dsagent.kernels.sparse_mla import sparse_mla
from dsagent.model.layers import Linear, fuse_rows
from dsagent.model.writer import quantize_weight


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(torch.seed() % 2**31)  # fresh inputs each run


def test_act_quant_uses_power_of_two_scales(gen: torch.Generator) -> None:
    x = (torch.randn(3, 300, generator=gen) * 7).to(torch.bfloat16)
    q, scale = act_quant(x)
    assert q.dtype == FP8 and q.shape == (3, 300) and scale.shape == (3, 3)
    assert torch.equal(scale, torch.exp2(torch.log2(scale).round()))  # ue8m0
    amax = x.float().abs().view(3, -1)[:, :256].view(3, 2, 128).amax(-1)
    assert torch.equal(scale[:, :2], torch.exp2(torch.ceil(torch.log2(amax / 448))))
    assert ((act_dequant(q, scale) - x.float()).abs() <= x.float().abs() / 16 + scale.max() * 2**-9).all()
    assert torch.equal(act_quant(torch.zeros(2, 128))[1], torch.full((2, 1), 2.0**-22))  # amax clamped to 1e-4


def test_fp8_to_float_covers_every_bit_pattern() -> None:
    every = torch.arange(256, dtype=torch.uint8).view(FP8)
    assert torch.equal(fp8_to_float(every).nan_to_num(7.0), every.float().nan_to_num(7.0))


def test_fp8_gemm_equals_the_dequantised_product(gen: torch.Generator) -> None:
    w, x = torch.randn(200, 300, generator=gen), torch.randn(5, 300, generator=gen).to(torch.bfloat16)
    w8, w_scale = quantize_weight(w)
    assert w_scale.shape == (2, 3)  # ceil-sized blocks at the ragged edges
    x8, x_scale = act_quant(x)
    expected = act_dequant(x8, x_scale) @ weight_dequant(w8, w_scale).T
    out = fp8_gemm(x8, x_scale, w8, w_scale)
    assert out.dtype == torch.bfloat16 and out.shape == (5, 200)
    torch.testing.assert_close(out.float(), expected, rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(fp8_linear(x, w8, w_scale), out)
    assert (weight_dequant(w8, w_scale) - w).abs().max() <= w.abs().max() / 8


def test_index_scores_formula_and_causal_mask(gen: torch.Generator) -> None:
    q = torch.randn(4, 3, 64, generator=gen).to(FP8)
    k = torch.randn(9, 64, generator=gen).to(FP8)
    w, k_scale = torch.randn(4, 3, generator=gen), torch.rand(9, generator=gen)
    scores = index_scores(q, w, k, k_scale, offset=5)
    for t in range(4):
        for s in range(9):
            if s > 5 + t:
                assert scores[t, s] == float("-inf")
                continue
            direct = sum(torch.relu(q[t, h].float() @ k[s].float()) * w[t, h] for h in range(3)) * k_scale[s]
            torch.testing.assert_close(scores[t, s], direct, rtol=1e-5, atol=1e-5)


def test_index_topk_pads_with_minus_one() -> None:
    scores = torch.tensor([[3.0, float("-inf"), float("-inf")], [1.0, 5.0, 2.0]])
    picked = index_topk(scores, 4)
    assert picked.dtype == torch.int32 and picked.shape == (2, 4)
    assert sorted(picked[0].tolist()) == [-1, -1, -1, 0] and sorted(picked[1].tolist()) == [-1, 0, 1, 2]
    assert set(index_topk(scores, 2)[1].tolist()) == {1, 2}


def test_sparse_mla_equals_masked_dense_attention(gen: torch.Generator) -> None:
    q = torch.randn(2, 3, 4, 40, generator=gen).to(torch.bfloat16)
    kv = torch.randn(2, 7, 40, generator=gen).to(torch.bfloat16)
    # Distinct positions per query (as top-k gives), some slots empty (-1), at least one key each.
    indices = torch.stack([torch.randperm(7, generator=gen)[:5] for _ in range(6)]).view(2, 3, 5).to(torch.int32)
    indices[..., 3:] = torch.where(torch.rand(2, 3, 2, generator=gen) < 0.5, -1, indices[..., 3:])
    out = sparse_mla(q, kv, indices, scale=0.3, dv=32)
    assert out.shape == (2, 3, 4, 32) and out.dtype == torch.bfloat16
    for b in range(2):
        for t in range(3):
            keys = sorted({i for i in indices[b, t].tolist() if i >= 0})
            rows = kv[b, keys].float()
            p = torch.softmax(q[b, t].float() @ rows.T * 0.3, dim=-1)
            torch.testing.assert_close(out[b, t].float(), p @ rows[:, :32], rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("fp8", [False, True])
def test_fused_moe_equals_a_loop_over_tokens(gen: torch.Generator, fp8: bool) -> None:
    experts, dim, inter, tokens = 4, 128, 128, 6
    x = torch.randn(tokens, dim, generator=gen).to(torch.bfloat16)
    gate, up = torch.randn(2, experts, inter, dim, generator=gen) * 0.1
    down = torch.randn(experts, dim, inter, generator=gen) * 0.1
    ids = torch.stack([torch.randperm(experts, generator=gen)[:2] for _ in range(tokens)])
    weights = torch.rand(tokens, 2, generator=gen)
    w13, w2 = torch.cat([gate, up], dim=1).to(torch.bfloat16), down.to(torch.bfloat16)
    scales = (None, None)
    if fp8:
        q13, q2 = [quantize_weight(w.float()) for w in w13], [quantize_weight(w.float()) for w in w2]
        w13, w2 = torch.stack([q for q, _ in q13]), torch.stack([q for q, _ in q2])
        scales = (torch.stack([s for _, s in q13]), torch.stack([s for _, s in q2]))
    out = fused_moe(x, ids, weights, w13, w2, *scales)
    assert out.shape == (tokens, dim) and out.dtype == torch.bfloat16
    for t in range(tokens):
        total = torch.zeros(dim)
        for j, e in enumerate(ids[t].tolist()):
            if fp8:
                g13 = weight_dequant(w13[e], scales[0][e])
                g, u, d = g13[:inter], g13[inter:], weight_dequant(w2[e], scales[1][e])
            else:
                g, u, d = w13[e, :inter].float(), w13[e, inter:].float(), w2[e].float()
            h = torch.nn.functional.silu(x[t].float() @ g.T) * (x[t].float() @ u.T)
            total += weights[t, j] * (h @ d.T)
        # fp8 quantises the activations too: compare directions; bf16 only rounds.
        assert torch.nn.functional.cosine_similarity(out[t].float(), total, dim=0) > (0.995 if fp8 else 0.9999)


@pytest.mark.parametrize("fp8", [False, True])
def test_fused_rows_give_each_layers_product(gen: torch.Generator, fp8: bool) -> None:
    # as q_a, the indexer's wk and kv_a are stacked: whole 128-row scale blocks, then a ragged last layer
    sizes = [256, 128, 96]
    weights = [torch.randn(n, 300, generator=gen) for n in sizes]
    layers = [Linear(*quantize_weight(w)) if fp8 else Linear(w.to(torch.bfloat16)) for w in weights]
    x = torch.randn(2, 300, generator=gen).to(torch.bfloat16)
    alone = [layer(x) for layer in layers]
    fused = fuse_rows(layers)
    assert fused is not None and fused.weight.shape == (480, 300)
    assert (fused.scale.shape == (4, 3)) if fp8 else fused.scale is None  # 2 + 1 + 1 blocks of rows
    for layer, part, ref in zip(layers, fused(x).split(sizes, dim=-1), alone, strict=True):
        torch.testing.assert_close(part, ref)
        assert torch.equal(layer(x), ref)  # each layer still computes the same: its weight is a view of the fused one
        assert layer.weight.untyped_storage().data_ptr() == fused.weight.untyped_storage().data_ptr()
    assert fuse_rows(layers[:1]) is None
    assert fuse_rows([Linear(torch.randn(8, 300)), Linear(torch.randn(8, 200))]) is None  # different input widths
    if fp8:  # a layer before the last that ends inside a 128-row scale block
        ragged = [Linear(*quantize_weight(torch.randn(n, 300, generator=gen))) for n in (96, 128)]
        assert fuse_rows(ragged) is None
