"""Decode speed of the whole engine on one GPU: eager (every kernel launched from Python) against replaying
the captured decode step from a CUDA graph (`Engine.from_pretrained(..., cuda_graphs=True)`, the default on
CUDA). Writes each preset's random checkpoint to a temporary folder, prefills a prompt, then feeds the same
fixed tokens one at a time to an eager and a graph session (each step ends with the logits on the host, as
Session.append returns them). Writes bench/results/engine-<device>.md (or --out DIR).

    python bench/engine_gpu.py [--out DIR] [--presets tiny,small] [--prompt 1100] [--steps 128]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from dsagent.model.engine import Engine, Session
from dsagent.model.writer import init_checkpoint
from gpu_common import Table, device_slug, write_report


def _decode(session: Session, tokens: list[int]) -> tuple[float, list[torch.Tensor]]:
    """Seconds to append `tokens` one by one, and the logits of each step."""
    torch.cuda.synchronize()
    started = time.perf_counter()
    logits = [session.append([t]) for t in tokens]
    torch.cuda.synchronize()
    return time.perf_counter() - started, logits


def measure(preset: str, fp8: bool, prompt_len: int, steps: int, table: Table) -> None:
    gen = torch.Generator().manual_seed(0)
    prompt = torch.randint(2, 120000, (prompt_len,), generator=gen).tolist()
    warm = torch.randint(2, 120000, (4,), generator=gen).tolist()
    tokens = torch.randint(2, 120000, (steps,), generator=gen).tolist()
    with tempfile.TemporaryDirectory() as tmp:
        init_checkpoint(preset, Path(tmp), fp8=fp8)
        graphs = Engine.from_pretrained(tmp, device="cuda", progress=False, cuda_graphs=True)
    eager = Engine(graphs.config, graphs.model, graphs.tokenizer, graphs.path, cuda_graphs=False)  # same weights
    results = {}
    for name, engine in (("eager", eager), ("graph", graphs)):
        session = engine.new_session()
        session.append(prompt)
        first, _ = _decode(session, warm[:1])  # the graph session captures here; kernels compile in both
        _decode(session, warm[1:])
        seconds, logits = _decode(session, tokens)
        results[name] = (seconds, logits, first, session)
    g, e = results["graph"], results["eager"]
    assert g[3]._graph is not None and g[3]._graph.replays >= steps, "the graph session did not replay"
    cosine = min(F.cosine_similarity(a, b, dim=0).item() for a, b in zip(g[1], e[1], strict=True))
    label = f"{preset} ({'fp8' if fp8 else 'bf16'})"
    table.add(label, str(prompt_len), steps / e[0], steps / g[0], f"{e[0] / g[0]:.2f}x", g[2] * 1e3, f"{cosine:.6f}")
    del graphs, eager, results
    torch.cuda.empty_cache()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--presets", default="tiny,small,tiny-fp8")
    parser.add_argument("--prompt", type=int, default=1100)  # cache 1280 rows: no reallocation while timing
    parser.add_argument("--steps", type=int, default=128)
    args = parser.parse_args()
    table = Table(
        f"Decode tokens/s, batch 1, {args.steps} steps after the prompt",
        ["model", "prompt", "eager tokens/s", "graph tokens/s", "graph / eager", "first graph step ms (capture)",
         "min cosine graph vs eager logits"],
    )  # fmt: skip
    for name in args.presets.split(","):
        preset, _, kind = name.partition("-")
        try:
            measure(preset, kind == "fp8", args.prompt, args.steps, table)
        except Exception as exc:  # report what failed instead of losing the other rows
            table.add(name, str(args.prompt), f"failed: {type(exc).__name__}: {str(exc)[:150]}", "", "", "", "")
    notes = [
        "- eager: Session.append with cuda_graphs=False (every kernel launched from Python); graph: the same "
        "engine and weights with cuda_graphs=True (the decode step replayed from a CUDA graph captured per "
        "cache allocation); both include copying the logits to the host every step",
        "- first graph step: the step run eagerly plus the capture (once per cache allocation)",
    ]
    write_report(args.out / f"engine-{device_slug()}.md", "Engine decode on one GPU", notes, [table])


if __name__ == "__main__":
    main()
