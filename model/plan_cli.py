"""Printing the per-GPU memory plan for `dsagent model info --gpus N --gpu-memory SIZE`."""

from __future__ import annotations

from dsagent.model.config import ModelConfig


def print_gpu_plan(config: ModelConfig, gpus: int, gpu_memory: str, reserve: str) -> None:
    from dsagent.cli import console, fail
    from dsagent.model.memplan import describe, plan_gpus
    from dsagent.model.sizing import parse_bytes
    from rich.table import Table

    try:
        memory_bytes, reserve_bytes = parse_bytes(gpu_memory), parse_bytes(reserve)
    except ValueError as exc:
        raise fail(str(exc)) from None
    plan = plan_gpus(config, gpus, memory_bytes, reserve_bytes)
    rows, verdict = describe(config, plan)
    table = Table(title=f"memory plan: {gpus} GPU{'s' if gpus > 1 else ''} of {gpu_memory}", show_header=False)
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)
    style = "green" if plan.fits else "bold red"
    console.print(f"[{style}]{verdict}[/]", highlight=False)
