"""Where the host time of one eager decode step goes, on 1 GPU and on 2: torch profiler tables per world size.

Same layer as bench/multigpu.py (one full-size V3.2 layer, fp8, seeded random weights), decode at 4,096
cached tokens; rank 0's trace. Prints the top host ops by self CPU time and the launch counts.

    python bench/multigpu_profile.py            # needs 2 CUDA GPUs
    python bench/multigpu_profile.py --smoke    # CPU ranks over gloo, a tiny-preset layer: checks the script only
"""

from __future__ import annotations

import argparse
from collections import Counter

import torch
from dsagent.model.launcher import run_ranks
from dsagent.model.parallel import ParallelContext
from multigpu import VOCAB, CountingContext, build_layer, fill_cache


def profile_step(parallel: ParallelContext, device: torch.device, length: int, preset: str) -> tuple[str, list]:
    """(profiler table, most frequent top-level host events) of one decode step after three warm-up steps."""
    ctx = CountingContext(parallel.rank, parallel.world, parallel.group)
    torch.manual_seed(0)
    model = build_layer(preset, ctx, device)
    token = torch.tensor([1234 % VOCAB], device=device)
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with torch.inference_mode():
        cache = fill_cache(model, length, device)
        for _ in range(3):
            model.forward(token, cache)
            cache.truncate(length)
        sync()
        with torch.profiler.profile(activities=activities) as prof:
            model.forward(token, cache)
            cache.truncate(length)
            sync()
    top = Counter(e.name for e in prof.events() if e.cpu_parent is None)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25), top.most_common(12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny preset on CPU ranks (gloo)")
    args = parser.parse_args()
    device, preset, length = ("cpu", "tiny", 256) if args.smoke else ("cuda", "v32-layer", 4096)
    for world in (1, 2):
        table, top = run_ranks(profile_step, world, device, length, preset)[0]
        print(f"=== {world} rank(s), decode at {length}\nmost frequent host events: {top}\n{table}", flush=True)


if __name__ == "__main__":
    main()
