"""`dsagent model init | info | generate`: make, size and try local checkpoints."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer

model_app = typer.Typer(help="Create, inspect and run local DeepSeek-V3.2 checkpoints.", no_args_is_help=True)

PRESET_NAMES = "tiny | small | v32-layer | v32-671b"


def register(app: typer.Typer) -> None:
    app.add_typer(model_app, name="model")


@model_app.command("init")
def init(
    preset: Annotated[str, typer.Argument(help=PRESET_NAMES)],
    out: Annotated[Path, typer.Argument(help="Folder to write the checkpoint into.")],
    fp8: Annotated[bool, typer.Option("--fp8", help="fp8 e4m3 weights with 128x128 block scales.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random weights.")] = 0,
    force: Annotated[bool, typer.Option("--force", help="Write into a folder that already has a config.")] = False,
) -> None:
    """Write a randomly initialised checkpoint in the Hugging Face layout (config, shards, index, tokenizer)."""
    from dsagent.cli import console, fail
    from dsagent.model.presets import CONFIG_ONLY, PRESETS
    from dsagent.model.writer import init_checkpoint

    if preset not in PRESETS:
        raise fail(f"unknown preset {preset!r}; choose one of {PRESET_NAMES}")
    if (out / "config.json").exists() and not force:
        raise fail(f"{out} already holds a checkpoint; pick another folder or pass --force")
    started = time.perf_counter()
    files = init_checkpoint(
        preset, out, fp8=fp8, seed=seed, on_shard=lambda i, n: console.print(f"wrote shard {i}/{n}", highlight=False)
    )
    what = "config only (a sizing preset)" if preset in CONFIG_ONLY else f"{len(files)} shard(s)"
    size = sum(f.stat().st_size for f in files)
    console.print(
        f"{preset}{' fp8' if fp8 else ''} -> {out}: {what}, {size / 2**20:.1f} MiB "
        f"in {time.perf_counter() - started:.1f} s",
        highlight=False,
    )


@model_app.command("info")
def info(
    path: Annotated[Path, typer.Argument(help="Checkpoint folder (or its config.json).")],
    memory: Annotated[str, typer.Option("--memory", help="Memory for weights + KV cache, e.g. 80GB.")] = "80GB",
    gpus: Annotated[int | None, typer.Option("--gpus", min=1, help="Plan a split over this many GPUs.")] = None,
    gpu_memory: Annotated[str | None, typer.Option("--gpu-memory", help="Memory of each GPU, e.g. 141GB.")] = None,
    reserve: Annotated[
        str, typer.Option("--reserve", help="Per GPU, kept for CUDA context, NCCL and activations.")
    ] = "4GiB",
) -> None:
    """Parameters, active parameters per token, weight bytes, KV-cache bytes per token and the longest
    context that fits in --memory, from the config alone; with --gpus / --gpu-memory, the per-GPU plan."""
    from dsagent.cli import console, fail
    from dsagent.model.config import ConfigError, load_config
    from dsagent.model.sizing import human_bytes, human_count, max_context, parse_bytes, size_model
    from rich.table import Table

    try:
        config = load_config(path)
        budget = parse_bytes(memory)
    except (ConfigError, ValueError) as exc:
        raise fail(str(exc)) from None
    s = size_model(config)
    context = max_context(config, budget)
    table = Table(title=f"{path} ({config.model_type}{', fp8' if config.is_fp8 else ''})", show_header=False)
    rows = [
        ("parameters", human_count(s.params)),
        ("active parameters / token", human_count(s.active_params)),
        ("weight bytes (checkpoint)", human_bytes(s.disk_bytes)),
        ("weight bytes (loaded)", human_bytes(s.weight_bytes)),
        (
            "KV bytes / token",
            f"{s.kv_bytes_per_token:,} (MLA latent+rope {s.kv_latent_bytes:,}, indexer key+scale {s.kv_index_bytes:,})",
        ),
        (
            f"longest context in {memory}",
            f"{context:,} tokens"
            + (f" (model max {config.max_position_embeddings:,})" if context > config.max_position_embeddings else "")
            if context
            else "weights do not fit",
        ),
    ]
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)
    if gpus is not None or gpu_memory is not None:
        from dsagent.model.plan_cli import print_gpu_plan

        print_gpu_plan(config, gpus or 1, gpu_memory or memory, reserve)


@model_app.command("generate")
def generate(
    path: Annotated[Path, typer.Argument(help="Checkpoint folder.")],
    prompt: Annotated[str, typer.Argument(help="Text to continue.")],
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", "-n", min=1)] = 64,
    temperature: Annotated[float, typer.Option("--temperature", min=0.0, help="0 = greedy.")] = 0.0,
    top_p: Annotated[float, typer.Option("--top-p", min=0.0, max=1.0)] = 1.0,
    top_k: Annotated[int, typer.Option("--top-k", min=0)] = 0,
    seed: Annotated[int | None, typer.Option("--seed")] = None,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:1, ...")] = "cpu",
    gpus: Annotated[int, typer.Option("--gpus", min=1, help="Split the model over this many GPUs.")] = 1,
    graphs: Annotated[bool, typer.Option("--graphs", help="With --gpus > 1: decode from CUDA graphs.")] = False,
) -> None:
    """Stream a continuation of PROMPT (after the BOS token), then print prefill and decode speed."""
    from dsagent.cli import err_console, fail
    from dsagent.model.config import ConfigError
    from dsagent.model.engine import Engine
    from dsagent.model.sampling import SamplingParams

    if not prompt:
        raise fail("the prompt is empty; pass some text to continue")
    try:
        if gpus > 1:
            from dsagent.model.launcher import launch

            engine = launch(path, gpus, device=device.split(":")[0], cuda_graphs=graphs)
        else:
            engine = Engine.from_pretrained(path, device=device)
        ids = [engine.config.bos_token_id, *engine.tokenizer.encode(prompt)]  # text starts after BOS
    except (ConfigError, ValueError) as exc:
        raise fail(str(exc)) from None
    session = engine.new_session()
    started = time.perf_counter()
    session.append(ids)
    prefill = time.perf_counter() - started
    decoder = engine.tokenizer.stream()
    sampling = SamplingParams(temperature=temperature, top_p=top_p, top_k=top_k, seed=seed)
    count, started = 0, time.perf_counter()
    for token in session.generate(max_new_tokens, sampling):
        sys.stdout.write(decoder.feed(token))
        sys.stdout.flush()
        count += 1
    decode = time.perf_counter() - started
    sys.stdout.write(decoder.flush() + "\n")
    err_console.print(
        f"prefill {len(ids)} tokens: {len(ids) / prefill:.1f} tok/s | decode {count} tokens: "
        f"{count / decode if decode else 0.0:.1f} tok/s | stop: {session.finish_reason} | "
        f"load {engine.load_seconds:.1f} s",
        highlight=False,
    )
