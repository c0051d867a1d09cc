"""What the local backend's session reuse saves: a scripted agent session on the real engine.

The agent runs N steps (read_file / search_code / list_dir over a copy of this project's source in a
real git workspace, then finish) on the `local` backend. The assistant turns are scripted but go
through the engine token by token (prefill with `session.sync`, one decode step per token), so every
number is the engine's. For each step: prompt tokens, tokens actually prefilled (the rest come from the
KV cache), prefill and decode seconds. A stateless API re-prefills the whole prompt every step; its
total is the sum of the prompt sizes, and its prefill time is measured on a fresh session for a few
sampled steps.

    python bench/agent_cache.py --preset small --device cuda
    python bench/agent_cache.py --preset tiny --device cpu --lines 20
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def checkpoint(args: argparse.Namespace) -> Path:
    if args.checkpoint:
        return Path(args.checkpoint)
    from dsagent.model.writer import init_checkpoint

    path = Path(args.workdir) / args.preset
    if not (path / "config.json").is_file():
        print(f"writing the {args.preset} checkpoint to {path}", flush=True)
        init_checkpoint(args.preset, path, seed=0)
    return path


def project(where: Path) -> Path:
    """A real git repository: this project's agent/ and tools/ sources."""
    repo = where / "project"
    for folder in ("agent", "tools"):
        shutil.copytree(ROOT / folder, repo / folder, ignore=shutil.ignore_patterns("__pycache__"))
    for args in (
        ["init", "-q", "-b", "main"],
        ["add", "-A"],
        ["-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "source"],
    ):
        subprocess.run(["git", *args], cwd=repo, check=True)
    return repo


def script(repo: Path, steps: int, lines: int) -> list[dict]:
    files = sorted(str(p.relative_to(repo)) for p in repo.rglob("*.py") if p.stat().st_size > 2000)
    symbols = ["Agent", "Registry", "Conversation", "TokenCache", "ToolResult", "SessionWriter", "PathJail"]
    messages = []
    for i in range(steps - 1):
        if i % 3 == 0:
            name, args = "read_file", {"path": files[i % len(files)], "start_line": 1, "end_line": lines}
        elif i % 3 == 1:
            name, args = "search_code", {"query": symbols[i % len(symbols)], "kind": "definition"}
        else:
            name, args = "list_dir", {"path": files[i % len(files)].split("/")[0], "depth": 1}
        call = {"id": f"c{i}", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
        messages.append(
            {
                "role": "assistant",
                "reasoning_content": f"Step {i + 1}: look at {name}.",
                "content": "",
                "tool_calls": [call],
            }
        )
    done = {"id": "done", "type": "function", "function": {"name": "finish", "arguments": '{"summary": "read"}'}}
    messages.append({"role": "assistant", "reasoning_content": "Enough.", "content": "", "tool_calls": [done]})
    return messages


def sync_device(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def warm_up(engine, device: str) -> None:
    """One throwaway prefill and a few decode steps, so compilation and caches do not land on step 1."""
    session = engine.new_session()
    session.append(engine.tokenizer.encode("def warm_up(engine):\n    return engine\n" * 40))
    for _ in range(4):
        session.append([100])
    sync_device(device)


def prefill_seconds(engine, ids: list[int], device: str, repeats: int = 3) -> float:
    """Median time to prefill `ids` on a fresh session: what re-sending the whole prompt costs."""
    times = []
    for _ in range(repeats):
        session = engine.new_session()
        sync_device(device)
        started = time.perf_counter()
        session.append(ids)
        sync_device(device)
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small", help="model preset to create when --checkpoint is not given")
    parser.add_argument("--checkpoint", help="an existing checkpoint folder")
    parser.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "dsagent-bench"))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--lines", type=int, default=40, help="lines each read_file step reads")
    parser.add_argument("--baseline", default="1,10,20,30", help="steps whose full re-prefill is timed")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "agent-cache.md"))
    args = parser.parse_args()

    from dsagent.agent import Agent
    from dsagent.agent.local import LocalBackend
    from dsagent.agent.scripted import ScriptedBackend
    from dsagent.config import Settings
    from dsagent.model.engine import Engine
    from dsagent.sandbox.workspace import Workspace
    from dsagent.tools.registry import default_registry

    dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    path = checkpoint(args)
    engine = Engine.from_pretrained(path, device=args.device, dtype=dtype, progress=False)
    warm_up(engine, args.device)
    tmp = Path(tempfile.mkdtemp(prefix="agent-cache-"))
    repo = project(tmp)
    sampled = {int(s) for s in args.baseline.split(",") if s}
    rows, prompts = [], {}
    with Workspace(repo) as ws:
        registry = default_registry(ws.root, index_dir=tmp / "index")
        backend = LocalBackend(engine, script=ScriptedBackend(script(ws.root, args.steps, args.lines)))

        def sink(event) -> None:
            if event.type == "usage":
                rows.append(event)
                print(
                    f"step {event.step}: prompt {event.prompt_tokens} prefilled {event.prefilled} "
                    f"({event.prefill_seconds:.3f} s) decode {event.generated} ({event.decode_seconds:.3f} s)",
                    flush=True,
                )
                if event.step in sampled:
                    prompts[event.step] = list(backend.cache.session.tokens[: event.prompt_tokens])

        settings = Settings(model={"max_context": 131072}, agent={"max_steps": args.steps + 5})
        agent = Agent(backend, registry, settings, None, sink)
        started = time.perf_counter()
        result = agent.run("Survey the agent and tools packages.")
        elapsed = time.perf_counter() - started
    baseline = {step: prefill_seconds(engine, ids, args.device) for step, ids in sorted(prompts.items())}
    for step, seconds in baseline.items():
        print(f"full re-prefill of step {step}: {len(prompts[step])} tokens in {seconds:.3f} s", flush=True)
    report(args, path, engine, rows, baseline, result, elapsed)


def shown_args() -> list[str]:
    """The command line without --out (where the table went is not part of how it was measured)."""
    argv, shown = sys.argv[1:], []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--out":
            skip = True
        elif not arg.startswith("--out="):
            shown.append(arg)
    return shown


def report(args, path, engine, rows, baseline, result, elapsed) -> None:
    reuse = sum(r.prefilled for r in rows)
    stateless = sum(r.prompt_tokens for r in rows)
    if args.device.startswith("cuda"):
        device = torch.cuda.get_device_name()
    else:
        device = f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    first, last = rows[1], rows[-1]  # step 1 is the full prefill of the system prompt and task
    lines = [
        "# Agent session reuse on the local backend",
        "",
        f"- date: {datetime.date.today().isoformat()}",
        f"- device: {device}; torch {torch.__version__}",
        f"- checkpoint: `{args.preset if not args.checkpoint else path}` ({engine.config.model_type}, "
        f"{engine.config.num_hidden_layers} layers, hidden {engine.config.hidden_size}, "
        f"vocab {engine.config.vocab_size}), {str(engine.model.dtype).removeprefix('torch.')}",
        f"- command: `python bench/agent_cache.py {' '.join(shown_args())}`",
        f"- run: {len(rows)} steps, ended `{result.reason}`, {elapsed:.1f} s in all. Assistant turns are scripted "
        "and fed through the engine token by token; tools run for real in a git workspace.",
        "",
        "| | prefilled tokens |",
        "|---|---|",
        f"| session reuse (`session.sync`) | {reuse} |",
        f"| re-prefill the whole prompt every step (stateless API) | {stateless} |",
        f"| **ratio** | **{stateless / max(reuse, 1):.1f}x fewer** |",
        "",
        f"Prefill time per step with reuse: step 2 {first.prefill_seconds:.3f} s at {first.prompt_tokens} tokens "
        f"of context, step {last.step} {last.prefill_seconds:.3f} s at {last.prompt_tokens} tokens.",
        "",
        "| step | context tokens | prefilled | reused | prefill s | full re-prefill s | generated | decode s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        full = f"{baseline[r.step]:.3f}" if r.step in baseline else ""
        lines.append(
            f"| {r.step} | {r.prompt_tokens} | {r.prefilled} | {r.reused} | {r.prefill_seconds:.3f} | "
            f"{full} | {r.generated} | {r.decode_seconds:.3f} |"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # One section per device: a new run replaces the section of its own device and keeps the others.
    title = lines[0]
    previous = out.read_text().split(title + "\n")[1:] if out.exists() else []
    kept = [title + "\n" + text.rstrip() + "\n" for text in previous if f"- device: {device};" not in text]
    out.write_text("\n".join([*kept, "\n".join(lines) + "\n"]))
    print(f"wrote {out}: {stateless / max(reuse, 1):.1f}x fewer prefilled tokens", flush=True)


if __name__ == "__main__":
    main()
