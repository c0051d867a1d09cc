"""One full-size DeepSeek-V3.2 layer (random fp8 weights) split over 2 GPUs against 1 GPU: decode step latency
at 4K and 64K context, prefill throughput, and the share of each step that is communication.

Each rank builds its own slices of the layer directly on its GPU, as model/shard.py splits a checkpoint (heads,
routed experts, shared expert, vocabulary). Weights are seeded by tensor name, so 1 and 2 GPUs run the same
model and the script reports how closely their outputs agree. The KV cache is filled with random rows (a
decode step's cost does not depend on the values) and rewound after each step. Communication share: the same
steps timed again with every collective skipped (compute alone, no waiting for the other rank), against the
real step. The embedding and LM head are cut to 2048 vocabulary rows, so a step is the layer.

    python bench/multigpu.py [--out DIR] [--contexts 4096,65536] [--prefill 4096] [--gpus 2]
    python bench/multigpu.py --smoke    # CPU ranks over gloo, a tiny-preset layer: checks the script only
"""

from __future__ import annotations

import argparse
import statistics
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch
from dsagent.kernels.fp8 import FP8
from dsagent.model.cache import KVCache
from dsagent.model.config import ForwardOptions, config_from_dict
from dsagent.model.graphs import DecodeGraph, GraphPool
from dsagent.model.launcher import run_ranks
from dsagent.model.parallel import ParallelContext, parallelize
from dsagent.model.presets import preset_config, tensor_specs
from dsagent.model.shard import ShardPlan
from dsagent.model.transformer import Transformer
from dsagent.model.weights import LayerReader, _block
from dsagent.model.writer import quantize_weight

VOCAB = 2048


@dataclass
class CountingContext(ParallelContext):
    """A ParallelContext that counts its collectives and their bytes."""

    calls: int = 0
    moved: int = 0

    def all_reduce(self, x: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            self.calls, self.moved = self.calls + 1, self.moved + x.nbytes
        return super().all_reduce(x)

    def gather_last(self, x: torch.Tensor, n: int) -> torch.Tensor:
        if self.world > 1:
            self.calls, self.moved = self.calls + 1, self.moved + x.nbytes * self.world
        return super().gather_last(x, n)


class SeededShard:
    """Stands in for a safetensors shard: makes each tensor on the device from a seed derived from its name
    (fp8 linears with their block scales), so every rank and every run sees the same weights."""

    def __init__(self, specs, device: torch.device):
        self.specs, self.device = {s.name: s for s in specs}, device
        self.scales: dict[str, torch.Tensor] = {}

    def names(self) -> list[str]:
        scales = [n.removesuffix("weight") + "weight_scale_inv" for n, s in self.specs.items() if s.role == "linear"]
        return list(self.specs) + scales

    def get_tensor(self, name: str) -> torch.Tensor:
        if name in self.scales:
            return self.scales.pop(name)
        spec = self.specs[name]
        if spec.role == "norm" or name.endswith("k_norm.weight"):
            return torch.ones(spec.shape, device=self.device)
        if spec.role == "vector32":
            return torch.zeros(spec.shape, device=self.device)
        seed = torch.Generator(device=self.device).manual_seed(zlib.crc32(name.encode()))
        w = torch.randn(spec.shape, device=self.device, generator=seed) * spec.shape[-1] ** -0.5
        if spec.role != "linear":
            return w.to(torch.bfloat16)
        q, scale = quantize_weight(w)
        self.scales[name.removesuffix("weight") + "weight_scale_inv"] = scale
        return q


def build_layer(preset: str, ctx: ParallelContext, device: torch.device) -> Transformer:
    one_layer = {"vocab_size": VOCAB, "num_hidden_layers": 1, "first_k_dense_replace": 0}  # one MoE layer
    config = config_from_dict(preset_config(preset, fp8=True) | one_layer)
    plan = ShardPlan(config, ctx.rank, ctx.world) if ctx.world > 1 else None
    shard = SeededShard(tensor_specs(config), device)
    reader = LayerReader({"seeded": shard}, dict.fromkeys(shard.names(), "seeded"), torch.bfloat16, device, plan)
    layers = [_block(config, reader, layer, ForwardOptions()) for layer in range(config.num_hidden_layers)]
    embed, head = reader.tensor("model.embed_tokens.weight"), reader.tensor("lm_head.weight")
    model = Transformer(config, embed, layers, reader.fp32("model.norm.weight"), head, ForwardOptions(), device, ctx)
    return model if plan is None else parallelize(model, ctx, plan)


def fill_cache(model: Transformer, length: int, device: torch.device) -> KVCache:
    cache = KVCache(model.config, model.dtype, device)
    cache.ensure(length + 1)
    seed = torch.Generator(device=device).manual_seed(1)
    for layer in cache.layers:
        layer.kv[:length] = torch.randn(length, layer.kv.shape[1], device=device, generator=seed).to(model.dtype)
        k = torch.randn(length, layer.index_k.shape[1], device=device, generator=seed) * 64
        layer.index_k[:length] = k.to(FP8)
        layer.index_scale[:length] = torch.rand(length, device=device, generator=seed) * 1e-2
    cache.length = length
    return cache


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(step, device: torch.device, warmup: int, reps: int) -> float:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(reps):
        _sync(device)
        t0 = time.perf_counter()
        step()
        _sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def timed(ctx: CountingContext, step, device: torch.device, reps: int) -> dict:
    """Step time with and without communication, and the collectives of one step."""
    ctx.skip_comm, ctx.calls, ctx.moved = False, 0, 0
    step()
    calls, moved = ctx.calls, ctx.moved
    full = median_ms(step, device, 3, reps)
    ctx.skip_comm = True
    alone = median_ms(step, device, 3, reps)
    ctx.skip_comm = False
    return {"ms": full, "compute_ms": alone, "calls": calls, "bytes": moved}


def measure(parallel: ParallelContext, device: torch.device, preset: str, contexts: list[int], prefill: int) -> dict:
    """Runs on every rank in step: decode at each context, then one prefill; rank 0's numbers are reported."""
    ctx = CountingContext(parallel.rank, parallel.world, parallel.group)
    torch.manual_seed(0)
    model = build_layer(preset, ctx, device)
    token = torch.tensor([1234 % VOCAB], device=device)
    reps = 15 if device.type == "cuda" else 3
    out: dict = {}
    with torch.inference_mode():
        for length in contexts:
            cache = fill_cache(model, length, device)

            def decode(cache=cache, length=length):
                model.forward(token, cache)
                cache.truncate(length)

            out["decode", length] = timed(ctx, decode, device, reps)
            if device.type == "cuda":  # the same step replayed from a CUDA graph on every rank
                graph = DecodeGraph(model, cache, GraphPool())
                replay = lambda graph=graph, length=length: graph.run(1234 % VOCAB, length)  # noqa: E731
                eager = out["decode", length]
                out["graph", length] = {"ms": median_ms(replay, device, 3, reps), "calls": eager["calls"],
                                        "bytes": eager["bytes"]}  # fmt: skip
                assert graph.graph is not None, "the decode step was not captured"
                del graph
            del cache
        ids = torch.randint(0, VOCAB, (prefill,), generator=torch.Generator().manual_seed(2)).to(device)
        cache = KVCache(model.config, model.dtype, device)

        def fill():
            model.forward(ids, cache)
            cache.truncate(0)

        out["prefill", prefill] = timed(ctx, fill, device, max(3, reps // 3))
        out["logits"] = model.forward(ids, cache).float().cpu()  # the same weights on 1 and 2 GPUs
    return out


def report(results: dict[int, dict], contexts: list[int], prefill: int):
    from gpu_common import Table

    columns = ["GPUs", "step", "ms", "tokens/s", "speedup vs 1 GPU", "compute alone ms", "communication share",
               "collectives / step", "MB moved / step"]  # fmt: skip
    table = Table("One V3.2 layer (fp8, random weights): eager steps, and decode replayed from CUDA graphs", columns)
    kinds = [("decode", c) for c in contexts] + [("graph", c) for c in contexts] + [("prefill", prefill)]
    labels = {"decode": "decode at {:,}", "graph": "decode at {:,}, CUDA graph", "prefill": "prefill {:,} tokens"}
    for kind, length in kinds:
        if (kind, length) not in results[1]:
            continue  # no graphs on CPU ranks
        base = results[1][kind, length]["ms"]
        for gpus, res in results.items():
            r = res[kind, length]
            tokens = length if kind == "prefill" else 1
            alone, share = "", ""  # a replayed graph cannot leave its collectives out
            if "compute_ms" in r:
                alone, share = r["compute_ms"], f"{max(0.0, 1 - r['compute_ms'] / r['ms']) if gpus > 1 else 0.0:.0%}"
            table.add(str(gpus), labels[kind].format(length), r["ms"], tokens / r["ms"] * 1e3,
                      f"{base / r['ms']:.2f}x", alone, share, str(r["calls"]), r["bytes"] / 1e6)  # fmt: skip
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--contexts", default="4096,65536")
    parser.add_argument("--prefill", type=int, default=4096)
    parser.add_argument("--gpus", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="tiny preset on CPU ranks (gloo); writes nothing")
    args = parser.parse_args()
    contexts = [int(c) for c in args.contexts.split(",")]
    device, preset = ("cpu", "tiny") if args.smoke else ("cuda", "v32-layer")
    if args.smoke:
        contexts, args.prefill = [256, 1024], 128
    results = {}
    for gpus in (1, args.gpus):
        results[gpus] = run_ranks(measure, gpus, device, preset, contexts, args.prefill)[0]
        print(f"{gpus} GPU(s):", {k: v for k, v in results[gpus].items() if k != "logits"}, flush=True)
    cosine = torch.nn.functional.cosine_similarity(results[1]["logits"], results[args.gpus]["logits"], dim=0).item()
    table = report(results, contexts, args.prefill)
    notes = [
        f"- {args.gpus} GPUs vs 1: cosine of the prefill's last logits {cosine:.5f} (same seeded weights; one layer, "
        "so only rounding differs)",
        "- eager: every kernel launched from Python; CUDA graph: the decode step captured once on every rank and "
        "replayed, as the engine decodes on one GPU, and on several with `model.gpu_graphs` (each replay copies its "
        "logits to the host); tokens/s of one layer, batch 1",
        "- communication share: 1 - (the step with every collective skipped) / (the real step); it includes "
        "waiting for the slower rank",
        "- collectives: per layer one fp32 all-reduce after attention and one after the MoE, plus the vocabulary-"
        "split embedding (all-reduce) and LM head (all-gather)",
    ]
    if args.smoke:
        print("\n".join([table.markdown(), *notes]))
        return
    from gpu_common import device_slug, write_report

    write_report(args.out / f"multigpu-{device_slug()}.md", "Multi-GPU: one V3.2 layer split over GPUs", notes, [table])


if __name__ == "__main__":
    main()
