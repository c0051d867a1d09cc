"""Long-context decode on one full-size DeepSeek-V3.2 layer, DSA vs dense attention, and the `small`
model's tokens/s against Hugging Face transformers' DeepseekV32ForCausalLM on the same weights.

Part 1 builds one V3.2 layer (dim 7168, 128 heads, 256 experts, fp8 weights, random) directly on the GPU,
fills its KV cache to each context length with random rows (decode cost does not depend on the values)
and times one decode step at that position, with the DSA indexer + top-k + sparse attention and with
dense attention over every cached row, both eager (as the engine runs today) and replayed from a CUDA
graph; it also times the attention part alone. Part 2 writes the `small` preset (bf16) to a temporary
folder and compares greedy decoding speed. Writes bench/results/long_context-<device>.md (or --out DIR).

    python bench/long_context.py [--out DIR] [--contexts 4096,16384,65536,131072]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from dsagent.kernels.fp8 import FP8
from dsagent.kernels.indexer import index_select
from dsagent.model.cache import KVCache
from dsagent.model.config import ForwardOptions, config_from_dict
from dsagent.model.presets import preset_config, tensor_specs
from dsagent.model.transformer import Transformer
from dsagent.model.weights import LayerReader, _block
from dsagent.model.writer import quantize_weight
from gpu_common import Table, device_slug, graph_time_ms, write_report

CUDA = torch.device("cuda")


class RandomShard:
    """Stands in for a safetensors shard: makes each requested tensor on the GPU (fp8 linears with their
    block scales), so a 15 GB layer needs no disk round trip."""

    def __init__(self, specs):
        self.specs = {s.name: s for s in specs}
        self.scales: dict[str, torch.Tensor] = {}

    def names(self) -> list[str]:
        names = list(self.specs)
        names += [n.removesuffix("weight") + "weight_scale_inv" for n, s in self.specs.items() if s.role == "linear"]
        return names

    def get_tensor(self, name: str) -> torch.Tensor:
        if name in self.scales:
            return self.scales.pop(name)
        spec = self.specs[name]
        if spec.role == "norm":
            return torch.ones(spec.shape, device=CUDA)
        if spec.role == "vector32":
            return (
                torch.ones(spec.shape, device=CUDA) if "k_norm.weight" in name else torch.zeros(spec.shape, device=CUDA)
            )
        w = torch.randn(spec.shape, device=CUDA) * spec.shape[-1] ** -0.5
        if spec.role != "linear":
            return w.to(torch.bfloat16)
        q, scale = quantize_weight(w)
        self.scales[name.removesuffix("weight") + "weight_scale_inv"] = scale
        return q


def build_layer(options: ForwardOptions) -> Transformer:
    config = config_from_dict(preset_config("v32-layer", fp8=True))
    shard = RandomShard(tensor_specs(config))
    reader = LayerReader({"random": shard}, dict.fromkeys(shard.names(), "random"), torch.bfloat16, CUDA)
    block = _block(config, reader, 0, options)
    # The LM head (129280 x 7168) is not part of the layer; 1024 rows keep it out of the step's time.
    embed, head = reader.tensor("model.embed_tokens.weight"), reader.tensor("lm_head.weight")[:1024].clone()
    return Transformer(config, embed, [block], reader.fp32("model.norm.weight"), head, options, CUDA)


def fill_cache(model: Transformer, length: int) -> KVCache:
    cache = KVCache(model.config, torch.bfloat16, CUDA)
    cache.ensure(length + 1)
    layer = cache.layers[0]
    layer.kv[:length] = torch.randn(length, layer.kv.shape[1], device=CUDA, dtype=torch.bfloat16)
    layer.index_k[:length] = (torch.randn(length, layer.index_k.shape[1], device=CUDA) * 64).to(FP8)
    layer.index_scale[:length] = torch.rand(length, device=CUDA) * 1e-2
    cache.length = length
    return cache


def decode_step_ms(model: Transformer, cache: KVCache, length: int, graph: bool) -> float:
    """One token at position `length` (the cache is rewound after each step, so every step is identical)."""
    token = torch.tensor([1234], device=CUDA)  # already on the GPU: no copy inside a captured graph

    def step():
        model.forward(token, cache)
        cache.truncate(length)

    if graph:
        return graph_time_ms(step)
    for _ in range(3):
        step()
    times = []
    for _ in range(15):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        step()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def _attention_inputs(length: int) -> dict[str, torch.Tensor]:
    """Random decode-step inputs of one layer's attention at `length` cached rows (batch 1, 128 heads)."""
    return {
        "q": torch.randn(1, 1, 128, 576, device=CUDA, dtype=torch.bfloat16),
        "kv": torch.randn(1, length, 576, device=CUDA, dtype=torch.bfloat16),
        "qi": (torch.randn(1, 64, 128, device=CUDA) * 64).to(FP8),
        "w": torch.randn(1, 64, device=CUDA),
        "ki": (torch.randn(length, 128, device=CUDA) * 64).to(FP8),
        "ks": torch.rand(length, device=CUDA),
        "position": torch.tensor([length - 1], device=CUDA),  # on the device, as in the captured step
    }


def attention_only_ms(length: int, dense: bool) -> float:
    """The attention part of a decode step alone, as the engine's captured step runs it: indexer scores + top-k
    + sparse MLA, or dense MLA."""
    from dsagent.kernels.sparse_mla import sparse_mla

    x = _attention_inputs(length)
    every = torch.arange(length, device=CUDA, dtype=torch.int32).view(1, 1, length)

    def step():
        if dense:
            return sparse_mla(x["q"], x["kv"], every, 0.04, 512)
        idx = index_select(x["qi"], x["w"], x["ki"], x["ks"], x["position"], 2048)
        return sparse_mla(x["q"], x["kv"], idx.view(1, 1, -1), 0.04, 512)

    step()
    return graph_time_ms(step)


def attention_parts(length: int) -> Table:
    """DSA attention at one context, part by part, each replayed from its own CUDA graph."""
    from dsagent.kernels.indexer_triton import index_scores_triton
    from dsagent.kernels.sparse_mla import sparse_mla

    table = Table(f"DSA attention at {length} keys, part by part (each part its own graph replay)", ["part", "us"])
    x = _attention_inputs(length)
    index = x["qi"], x["w"], x["ki"], x["ks"], x["position"]
    idx = torch.randperm(length, device=CUDA)[:2048].int().view(1, 1, -1)
    empty = torch.empty(1, device=CUDA)
    parts = [
        ("a trivial kernel (the cost of a graph replay itself)", lambda: empty.fill_(1.0)),
        ("indexer scores (decode kernel)", lambda: index_scores_triton(*index)),
        ("indexer scores + top-k 2048 (scores + first digit, radix select)",
         lambda: index_select(*index, 2048)),
        ("indexer scores + torch.topk", lambda: torch.topk(index_scores_triton(*index), 2048)),
        ("sparse MLA over 2048 rows (128 heads)", lambda: sparse_mla(x["q"], x["kv"], idx, 0.04, 512)),
    ]  # fmt: skip
    for name, fn in parts:
        fn()
        table.add(name, graph_time_ms(fn) * 1e3)
    return table


def part_one(contexts: list[int]) -> Table:
    table = Table(
        "One V3.2 layer (fp8 weights), decode step latency",
        ["context", "DSA eager ms", "dense eager ms", "DSA graph ms", "dense graph ms", "dense / DSA (graph)",
         "attention only: DSA us", "dense us", "dense / DSA", "step bound: dense / (DSA - DSA attention)"],
    )  # fmt: skip
    model = build_layer(ForwardOptions(attention="absorbed"))
    for length in contexts:
        cache = fill_cache(model, length)
        row = []
        for graph in (False, True):
            for variant in ("reference", "dense_attention"):
                model.options = ForwardOptions(attention="absorbed", variant=variant)
                row.append(decode_step_ms(model, cache, length, graph))
        sparse, dense = attention_only_ms(length, False), attention_only_ms(length, True)
        bound = row[3] / max(row[2] - sparse, 1e-9)  # the step ratio if DSA attention cost nothing
        table.add(str(length), *row[:4], f"{row[3] / row[2]:.2f}x", sparse * 1e3, dense * 1e3, f"{dense / sparse:.2f}x",
                  f"{bound:.2f}x")  # fmt: skip
        del cache
    return table


def _ours_tokens_per_s(path: Path, prompt: list[int], new: int) -> tuple[float, float]:
    from dsagent.model.engine import Engine

    engine = Engine.from_pretrained(path, device="cuda", progress=False)
    warm = engine.new_session()  # compiles the Triton kernels for these shapes outside the timing
    logits = warm.append(prompt)
    for _ in range(4):
        logits = warm.append([int(logits.argmax())])
    session = engine.new_session()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    logits = session.append(prompt)
    t1 = time.perf_counter()
    for _ in range(new):
        logits = session.append([int(logits.argmax())])
    torch.cuda.synchronize()
    t2 = time.perf_counter()
    return len(prompt) / (t1 - t0), new / (t2 - t1)


def _hf_tokens_per_s(path: Path, prompt: list[int], new: int) -> tuple[float, float]:
    from transformers import AutoModelForCausalLM

    model, info = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16, output_loading_info=True)
    missing = [k for k in info.get("missing_keys", [])]
    if missing:  # weights it would make up itself: then it is not the same model
        raise RuntimeError(f"transformers did not load {len(missing)} tensors, e.g. {missing[:3]}")
    model = model.to(CUDA).eval()
    ids = torch.tensor([prompt], device=CUDA)
    kw = {"do_sample": False, "eos_token_id": None, "pad_token_id": 0}
    with torch.inference_mode():
        model.generate(ids, max_new_tokens=2, min_new_tokens=2, **kw)  # warm-up
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        model.generate(ids, max_new_tokens=1, min_new_tokens=1, **kw)
        torch.cuda.synchronize()
        t1 = time.perf_counter()
        model.generate(ids, max_new_tokens=new + 1, min_new_tokens=new + 1, **kw)
        torch.cuda.synchronize()
        t2 = time.perf_counter()
    return len(prompt) / (t1 - t0), new / ((t2 - t1) - (t1 - t0))


def part_two(context: int, new: int) -> Table:
    from dsagent.model.writer import init_checkpoint

    table = Table(
        f"`small` preset (bf16), prompt {context} tokens, {new} greedy tokens",
        ["engine", "prefill tokens/s", "decode tokens/s"],
    )
    prompt = torch.randint(2, 120000, (context,), generator=torch.Generator().manual_seed(0)).tolist()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "small"
        init_checkpoint("small", path)
        for name, fn in [("dsagent", _ours_tokens_per_s), ("transformers", _hf_tokens_per_s)]:
            try:
                table.add(name, *fn(path, prompt, new))
            except Exception as exc:  # report what failed instead of losing the other rows
                table.add(name, f"failed: {type(exc).__name__}: {str(exc)[:150]}", "")
            torch.cuda.empty_cache()
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--contexts", default="4096,16384,65536,131072")
    parser.add_argument("--small-context", type=int, default=2048)
    parser.add_argument("--new-tokens", type=int, default=64)
    args = parser.parse_args()
    torch.manual_seed(0)
    contexts = [int(c) for c in args.contexts.split(",")]
    tables = [part_one(contexts), attention_parts(max(contexts)), part_two(args.small_context, args.new_tokens)]
    notes = [
        "- eager: the engine's forward as it runs today (Python launches every kernel); graph: the same step "
        "captured once in a CUDA graph and replayed (decode at a fixed position), i.e. launch overhead removed",
        "- attention only: indexer scores + top-k 2048 + sparse MLA over the selected rows, vs dense MLA over "
        "every cached row (batch 1, 128 heads, CUDA graph replay); dense runs the same kernel (Gluon on Hopper) over "
        "every row, split into one wave of programs",
        "- step bound: what the whole step's ratio would be if DSA's attention took no time at all (the rest of the "
        "step, mostly the routed experts' weights, is the same for both)",
        "- the layer's model keeps 1024 rows of the LM head, so a step is embedding + the layer + norm",
    ]
    write_report(args.out / f"long_context-{device_slug()}.md", "Long-context decode", notes, tables)


if __name__ == "__main__":
    main()
